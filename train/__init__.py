"""DreaMoving training (the paper's four stages) on diffusers + accelerate, sharing ``dreamoving``'s modules."""
