package embed

import (
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/imgfs/imgfs/embed/imgdecode"
	"github.com/imgfs/imgfs/embed/phash"
)

// Recipe says how a decoded image becomes an embedding vector. Changing any field changes
// the embedding ID, so stored embeddings made with another recipe are recomputed.
type Recipe struct {
	Layers []string // layers whose pooled outputs are L2-normalised and concatenated
	Pool   string   // "gem", "mean" or "max"
	GeMP   float64  // GeM exponent when Pool is "gem"
	Grid   int      // pool each cell of a Grid x Grid split of the map (1: whole map)
	Flip   bool     // average the pooled features of the image and its mirror image
	Power  float64  // signed power normalisation of each pooled vector (0: none)
	Trim   bool     // cut off uniform borders before resampling (trim.go)
	// Local is the side of the cell grid of the verification descriptor (verify.go) taken
	// from the first layer's map; 0: none.
	Local int
}

// DefaultRecipe was chosen by measured near-duplicate quality (docs/embed.md): max pooling of
// MobileNetV2's 14x14x96 block_12_add output over a 3x3 grid, 9 cells x 96 = 864 dimensions.
// Uniform borders are trimmed first (trim.go).
// Each photo also gets a 7x7-cell Local descriptor of the same map for verification.
var DefaultRecipe = Recipe{Layers: []string{"block_12_add"}, Pool: "max", Grid: 3, Trim: true, Local: LocalGrid}

// recipeVersion counts changes to how Recipe fields are interpreted (or to preprocessing).
// 2: EXIF orientation applied; JPEGs decoded at reduced DCT scale (Decode).
// 3: JPEGs decoded down to MinDecodeSide 224 instead of 448.
const recipeVersion = 3

// String is the recipe's stable identifier.
func (r Recipe) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "r%d:%s:%s:", recipeVersion, preprocessID, strings.Join(r.Layers, "+"))
	b.WriteString(r.Pool)
	if r.Pool == "gem" {
		b.WriteString(strconv.FormatFloat(r.GeMP, 'g', -1, 64))
	}
	if r.Grid > 1 {
		fmt.Fprintf(&b, ":grid%d", r.Grid)
	}
	if r.Flip {
		b.WriteString(":flip")
	}
	if r.Power > 0 {
		b.WriteString(":pow" + strconv.FormatFloat(r.Power, 'g', -1, 64))
	}
	if r.Trim {
		b.WriteString(":trim")
	}
	if r.Local > 0 {
		fmt.Fprintf(&b, ":local%d", r.Local)
	}
	return b.String()
}

func (r Recipe) validate(m *Model) error {
	if len(r.Layers) == 0 {
		return errors.New("embed: recipe names no layer")
	}
	for _, l := range r.Layers {
		if _, ok := m.byName[l]; !ok {
			return fmt.Errorf("embed: model %s has no layer %q", m.name, l)
		}
	}
	switch r.Pool {
	case "mean", "max":
	case "gem":
		if !(r.GeMP >= 1 && r.GeMP <= 16) {
			return errors.New("embed: GeM exponent must be in [1, 16]")
		}
	default:
		return fmt.Errorf("embed: pooling %q unknown", r.Pool)
	}
	if r.Grid < 1 || r.Grid > 7 {
		return errors.New("embed: grid must be 1 to 7 cells a side")
	}
	for _, l := range r.Layers {
		if n := m.nodes[m.byName[l]]; n.h < r.Grid || n.w < r.Grid {
			return fmt.Errorf("embed: layer %s (%dx%d) is smaller than a %d-cell grid", l, n.h, n.w, r.Grid)
		}
	}
	if n := m.nodes[m.byName[r.Layers[0]]]; r.Local != 0 && (r.Local < 2 || r.Local > n.h || r.Local > n.w) {
		return fmt.Errorf("embed: local grid %d does not fit layer %s (%dx%d)", r.Local, r.Layers[0], n.h, n.w)
	}
	if r.Power < 0 || r.Power > 4 {
		return errors.New("embed: power normalisation exponent must be in [0, 4]")
	}
	return nil
}

// SetRecipe changes how Embed computes vectors (and so ID). Not safe while Embed runs.
func (m *Model) SetRecipe(r Recipe) error {
	if err := r.validate(m); err != nil {
		return err
	}
	m.recipe = r
	m.recipe.Layers = append([]string(nil), r.Layers...)
	return nil
}

// Recipe returns the recipe Embed uses.
func (m *Model) Recipe() Recipe { return m.recipe }

// ID identifies model weights, preprocessing and recipe: embeddings with different IDs are
// not comparable. Example: "mobilenet_v2@3f2a9c01d2e4/r2:jpegdct-sq-bilinear-pm1:block_12_add:max:grid3".
func (m *Model) ID() string { return m.id + "/" + m.recipe.String() }

// Version is the embedding version to store next to every vector: model weights (a hash of
// the model file), preprocessing version and recipe (the same string as ID). Vectors whose
// stored Version differs from the loaded model's must be recomputed.
func (m *Model) Version() string { return m.ID() }

// Dim is the length of the vectors Embed returns.
func (m *Model) Dim() int {
	d := 0
	for _, l := range m.recipe.Layers {
		d += m.nodes[m.byName[l]].c
	}
	return d * m.recipe.Grid * m.recipe.Grid
}

// Embed computes img's unit-length embedding vector. Safe for concurrent use.
func (m *Model) Embed(img image.Image) ([]float32, error) {
	rgba, err := m.input(img)
	if err != nil {
		return nil, err
	}
	vec, _, err := m.embedInput(rgba, false)
	return vec, err
}

// EmbedMirror computes the embedding vectors of img and of its mirror image (left-right),
// from one preprocessing. Safe for concurrent use. The index stores only the first; a
// query with both finds a mirrored copy whichever of the two was indexed first
// (docs/similar.md).
func (m *Model) EmbedMirror(img image.Image) (vec, mirror []float32, err error) {
	e, err := m.embedBoth(img)
	return e.Vector, e.Mirror, err
}

// embedBoth computes the vectors and Local descriptors of img and of its mirror image.
func (m *Model) embedBoth(img image.Image) (Embedding, error) {
	rgba, err := m.input(img)
	if err != nil {
		return Embedding{}, err
	}
	var e Embedding
	if e.Vector, e.Local, err = m.embedInput(rgba, false); err != nil {
		return Embedding{}, err
	}
	if e.Mirror, e.LocalMirror, err = m.embedInput(rgba, true); err != nil {
		return Embedding{}, err
	}
	return e, nil
}

// input preprocesses img for the network (docs/embed.md, Preprocessing).
func (m *Model) input(img image.Image) (*image.RGBA, error) {
	if len(m.recipe.Layers) == 0 {
		return nil, errors.New("embed: model has no embedding recipe (call SetRecipe)")
	}
	return toInput(img, m.in.Width, m.in.Height, m.recipe.Trim)
}

// embedInput runs the recipe on a preprocessed image (mirrored when flip): the vector, and
// the Local descriptor when the recipe asks for one.
func (m *Model) embedInput(rgba *image.RGBA, flip bool) ([]float32, Local, error) {
	r := m.recipe
	x := make([]float32, m.in.Width*m.in.Height*3)
	var pooled [][]float32
	var loc Local
	passes := 1
	if r.Flip {
		passes = 2
	}
	for p := 0; p < passes; p++ {
		tensorInput(rgba, (p == 1) != flip, x)
		fms, err := m.Forward(x, r.Layers...)
		if err != nil {
			return nil, Local{}, err
		}
		if p == 0 && r.Local > 0 {
			loc = LocalOf(fms[0], r.Local)
		}
		var cells []FeatureMap
		for _, fm := range fms {
			cells = append(cells, GridCells(fm, r.Grid)...)
		}
		for i, fm := range cells {
			var v []float32
			switch r.Pool {
			case "gem":
				v = PoolGeM(fm, r.GeMP)
			case "max":
				v = PoolMax(fm)
			default:
				v = PoolMean(fm)
			}
			if p == 0 {
				pooled = append(pooled, v)
			} else {
				for k := range v {
					pooled[i][k] = (pooled[i][k] + v[k]) / 2
				}
			}
		}
	}
	var out []float32
	for _, v := range pooled {
		if r.Power > 0 {
			for k, x := range v {
				v[k] = float32(math.Copysign(math.Pow(math.Abs(float64(x)), r.Power), float64(x)))
			}
		}
		out = append(out, Normalize(v)...)
	}
	return Normalize(out), loc, nil
}

// GridCells splits fm into n x n cells (row-major; cell i spans rows i*H/n to (i+1)*H/n).
func GridCells(fm FeatureMap, n int) []FeatureMap {
	if n <= 1 {
		return []FeatureMap{fm}
	}
	var out []FeatureMap
	for i := 0; i < n; i++ {
		y0, y1 := i*fm.H/n, (i+1)*fm.H/n
		for j := 0; j < n; j++ {
			x0, x1 := j*fm.W/n, (j+1)*fm.W/n
			c := FeatureMap{H: y1 - y0, W: x1 - x0, C: fm.C, Data: make([]float32, 0, (y1-y0)*(x1-x0)*fm.C)}
			for y := y0; y < y1; y++ {
				c.Data = append(c.Data, fm.Data[(y*fm.W+x0)*fm.C:(y*fm.W+x1)*fm.C]...)
			}
			out = append(out, c)
		}
	}
	return out
}

// FeatureMaps preprocesses img (mirrored when flip) and returns the named layers' outputs.
func (m *Model) FeatureMaps(img image.Image, flip bool, layers ...string) ([]FeatureMap, error) {
	rgba, err := m.input(img)
	if err != nil {
		return nil, err
	}
	x := make([]float32, m.in.Width*m.in.Height*3)
	tensorInput(rgba, flip, x)
	return m.Forward(x, layers...)
}

// Embedding is what the index stores per image.
type Embedding struct {
	Vector  []float32 // unit length
	Mirror  []float32 // embedding of the left-right mirror image (Model.EmbedMirror)
	PHash   uint64    // 64-bit DCT perceptual hash (embed/phash) of the same decoded image
	DHash   uint64    // 64-bit difference hash
	ModelID string    // Model.Version() at the time: recompute when it differs
	// Local and LocalMirror are the verification descriptors (verify.go) of the image and
	// of its mirror image; empty when the recipe has none.
	Local, LocalMirror Local
}

// MaxPixels is the default cap on an image's declared width*height (decompression bombs).
const MaxPixels = 100_000_000

// MinDecodeSide is the smallest side Decode asks a scaling decoder for: the network's
// 224-pixel input. The anti-aliased bilinear resample still averages every decoded pixel.
// Recipe version 2 asked for 448; 224 decodes a 12 MP JPEG at 1/8 scale and pays for the
// mirror image's forward pass (docs/embed.md).
const MinDecodeSide = 224

// Decode decodes an image (JPEG, PNG, GIF, WebP, BMP, TIFF; EXIF orientation applied) for
// Embed and the perceptual hashes: JPEGs may come back downscaled in the DCT domain to no
// less than MinDecodeSide pixels a side (libjpeg-turbo; about 8x faster for a 12 MP photo),
// so use embed/imgdecode for pixels to display. Images declaring more than maxPixels pixels
// are refused before decoding. Embed(Decode(x)) is exactly what EmbedFile(x) computes.
func Decode(r io.Reader, maxPixels int) (image.Image, string, error) {
	b, err := io.ReadAll(io.LimitReader(r, imgdecode.MaxInputBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("embed: read: %v", err)
	}
	if len(b) > imgdecode.MaxInputBytes {
		return nil, "", fmt.Errorf("embed: image file larger than %d bytes", imgdecode.MaxInputBytes)
	}
	return imgdecode.DecodeWith(b, imgdecode.Options{MaxPixels: maxPixels, MinWidth: MinDecodeSide, MinHeight: MinDecodeSide})
}

// DecodeImage is Decode with the default MaxPixels.
func DecodeImage(r io.Reader) (image.Image, error) {
	img, _, err := Decode(r, MaxPixels)
	return img, err
}

// EmbedFile decodes an image and computes its embedding, its mirror image's embedding and
// the perceptual hashes. Safe for concurrent use.
func EmbedFile(m *Model, r io.Reader) (Embedding, error) {
	img, err := DecodeImage(r)
	if err != nil {
		return Embedding{}, err
	}
	e, err := m.embedBoth(img)
	if err != nil {
		return Embedding{}, err
	}
	e.PHash, e.DHash = phash.Hashes(img)
	e.ModelID = m.Version()
	return e, nil
}
