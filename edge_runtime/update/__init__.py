"""Releases on the device: the pure policy, A/B slots, TUF fetch, the ONNX Runtime cache, the
smoke test, the updater and its loop."""
