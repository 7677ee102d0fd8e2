"""The exporter: finalised frames into a dataset folder (class folders per split, a manifest)."""
