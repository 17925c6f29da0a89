"""lab: Hydra-composed CNN image-classification experiments on PyTorch Lightning."""
