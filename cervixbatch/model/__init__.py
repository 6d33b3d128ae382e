"""The two UNet stages: builders, losses, loading and batched inference."""
