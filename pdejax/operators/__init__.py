"""Neural operators (FNO, DeepONet, MultiONet) and physics-informed diffusion models: not implemented yet."""

__all__: list[str] = []
