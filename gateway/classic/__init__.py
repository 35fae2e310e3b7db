"""Classic models (scikit-learn, ONNX): Open Inference Protocol tensors and their checks
against a version's signature, artifacts loaded by sha256, the runtimes that run them in
process, and the example model. numpy, scikit-learn, skops and onnxruntime are imported only
when a model is loaded or trained, never when the gateway starts."""
