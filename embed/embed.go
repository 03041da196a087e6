// Package embed computes image embeddings for near-duplicate search with a pretrained CNN
// (MobileNetV2, ImageNet weights) evaluated in pure Go on gorgonia.org/tensor.
package embed

// DefaultModelName is the model imgfs uses unless told otherwise.
const DefaultModelName = "mobilenet_v2"
