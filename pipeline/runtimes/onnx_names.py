"""The names an exported model is known by, kept apart from the exporter (which imports torch)."""
OPSET = 17
# Every model ONNX Runtime runs has this form: uint8 NHWC crops in, probabilities out, and, where the model
# gives them, one embedding per image.
INPUT, OUTPUT, EMBEDDING = "images", "probs", "embedding"
