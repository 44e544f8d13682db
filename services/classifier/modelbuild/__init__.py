"""Build-time model transformations run by fetch_model.py in the image's model stage (never at serving time).

- `dequantize`: a quantized .tflite back to a float32 SavedModel with TF Hub's classification interface.
- `quantize`: a SavedModel to a full-integer int8 .tflite, calibrated on a folder of images.
- `images`: the photos both read (probe images for verification, calibration inputs).

Self-contained on purpose (numpy, Pillow, TensorFlow, LiteRT; not the `classifier` package): the model
stage copies only this folder and fetch_model.py, so a change to the service's code does not rebuild the
model layer.
"""
