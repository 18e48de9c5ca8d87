"""Entry points of the DVC pipeline's stages (`dvc.yaml`); each reads only its own params."""
