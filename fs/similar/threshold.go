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

// The verification floor (verify.go; docs/similar.md, Verification). Pairs from the floor up
// to the threshold are candidates, kept only when their Local descriptors confirm them. The
// floor is the lowest of 0.88, 0.89, ... whose candidates, among n photos, stay within
// MaxCandidatesPerPhoto per photo (the verification work per new photo) and expect, with
// the verifier's false-pass rate verifyFalsePass, fewer than MaxExpectedFalse false matches
// together with the threshold's own.
const (
	// MaxCandidatesPerPhoto bounds the verifications a new photo costs (about 0.15 ms each).
	MaxCandidatesPerPhoto = 300
	// verifyFalsePass bounds the share of unrelated candidate pairs of real photos the
	// verifier passes: 4 of 180,166 DEV x background candidates from 0.88 (2.2e-5), 0 of
	// about 163,000 of DEV's own (bench/similar-calibrate); rounded up. docs/similar.md says
	// where it fails: objects cut out on a plain background.
	verifyFalsePass = 5e-5
	// MinVerifiedThreshold is the lowest automatic threshold when pairs below it are
	// verified: unverified pairs from 0.93 would spend the false-match budget the verified
	// candidates need, and the verifier confirms nearly all true pairs there.
	MinVerifiedThreshold = 0.94
)

// candidateRates is the share of unrelated pairs scoring at least 0.88, 0.89, ... 0.92: the
// higher of the rates measured on neardup DEV's unrelated pairs and on the background set
// (bench/similar-calibrate). Above 0.92, the tail model.
var candidateRates = []float64{0.22, 0.075, 0.0136, 1.31e-3, 5.4e-5}

// candidateRate is the share of unrelated pairs scoring at least the floor f (f >= 0.88).
func candidateRate(f float32) float64 {
	if i := int(math.Round((float64(f) - 0.88) * 100)); i < len(candidateRates) {
		return candidateRates[max(i, 0)]
	}
	return tailP * math.Exp(-(float64(f)-tailU)/tailScale)
}

// VerifyFloor is the verification floor for n photos under threshold t: the lowest of 0.88,
// 0.89, ... below t within the bounds above; t itself when none is.
func VerifyFloor(n int, t float32) float32 {
	pairs := float64(n) * float64(max(n-1, 0)) / 2
	budget := MaxExpectedFalse - ExpectedFalseMatches(n, t)
	for i := 0; ; i++ {
		f := float32(math.Round(88+float64(i)) / 100)
		if f >= t {
			return t
		}
		rate := candidateRate(f)
		if float64(n)*rate <= MaxCandidatesPerPhoto && pairs*rate*verifyFalsePass < budget {
			return f
		}
	}
}

// AutoThresholds is the automatic threshold and verification floor of n photos when pairs
// are verified: the threshold is at least MinVerifiedThreshold, and the floor is
// VerifyFloor's (0.94 and 0.88 up to about 1,500 photos; 0.956 and 0.93 at 100,000). When
// no floor fits below it, the threshold is AutoThreshold(n) and there is no verification.
func AutoThresholds(n int) (threshold, floor float32) {
	t := max(AutoThreshold(n), MinVerifiedThreshold)
	if f := VerifyFloor(n, t); f < t {
		return t, f
	}
	t = AutoThreshold(n)
	return t, t
}
