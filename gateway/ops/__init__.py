"""The HTTP surface: health, metrics and the ops API, thin handlers over the stages."""
