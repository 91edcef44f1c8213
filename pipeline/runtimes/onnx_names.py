"""The names an exported model is known by, kept apart from the exporter (which imports torch)."""
OPSET = 17
INPUT, OUTPUT = "images", "probs"
