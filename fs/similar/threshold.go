package similar

import "math"

// The threshold that holds at scale (docs/similar.md, "Threshold"). A fixed cosine cut-off
// cannot serve every library: the number of unrelated pairs grows with the square of the
// number of photos, so a pair false-positive rate that gives 0.1 false matches among 1,000
// photos gives 1,000 among 100,000. The automatic threshold is the lowest at which the
// library, at its size when mounted, expects fewer than MaxExpectedFalse false matches.
//
// The expectation comes from a tail model of the scores of unrelated photos, measured with
// bench/similar-calibrate -bg on 2,871,933 unrelated pairs (DEV x background photos and
// background photos of different sources): P(score >= t) = tailP * exp(-(t - tailU) /
// tailScale), fitted on half the pairs and checked on the other half.
const (
	tailU     = 0.9096
	tailP     = 1e-3
	tailScale = 0.00351

	// MaxExpectedFalse bounds the expected number of false matches in .similar/.
	MaxExpectedFalse = 10
	// MinAutoThreshold and MaxAutoThreshold bound the automatic threshold: below 0.93 the
	// tail model is not checked (precision on DEV falls fast), above 0.96 little is found.
	MinAutoThreshold = 0.93
	MaxAutoThreshold = 0.96
)

// ExpectedFalseMatches is the tail model's expected number of unrelated pairs scoring at
// least t among n photos.
func ExpectedFalseMatches(n int, t float32) float64 {
	pairs := float64(n) * float64(n-1) / 2
	return pairs * tailP * math.Exp(-(float64(t)-tailU)/tailScale)
}

// AutoThreshold is the lowest threshold (rounded up to 0.001) at which n photos expect fewer
// than MaxExpectedFalse false matches, within [MinAutoThreshold, MaxAutoThreshold]: 0.93 up
// to about 2,500 photos, 0.940 at 10,000, 0.956 at 100,000.
func AutoThreshold(n int) float32 {
	pairs := float64(n) * float64(max(n-1, 0)) / 2
	t := MinAutoThreshold
	if pairs*tailP > MaxExpectedFalse {
		t = max(t, tailU+tailScale*math.Log(pairs*tailP/MaxExpectedFalse))
	}
	t = math.Ceil(t*1000-1e-9) / 1000
	return float32(min(t, MaxAutoThreshold))
}
