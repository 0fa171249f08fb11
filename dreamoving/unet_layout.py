"""Where motion blocks sit in an LDM (SD1.5-family) U-Net, from its config alone.

AnimateDiff places one motion block after each down-block resnet (+attention), after the middle
attention (v2 and later), and after each up-block resnet (+attention), before any upsampler. In the
LDM layout ``input_blocks[0]`` is conv_in and each level ends with a downsampler block (not the last).
"""
from __future__ import annotations

from dataclasses import dataclass

from .motion_module import MotionModuleSpec


@dataclass(frozen=True)
class UNetLayout:
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: tuple[int, ...]

    @classmethod
    def from_config(cls, unet_config: dict) -> "UNetLayout":
        levels = len(unet_config["channel_mult"])
        nrb = unet_config["num_res_blocks"]
        nrb = tuple(nrb) if isinstance(nrb, (list, tuple)) else (nrb,) * levels
        return cls(unet_config["model_channels"], tuple(unet_config["channel_mult"]), nrb)

    @property
    def level_channels(self) -> list[int]:
        return [self.model_channels * m for m in self.channel_mult]

    def motion_spec(self, decoder: bool = True, **block_config) -> MotionModuleSpec:
        """The spec of a motion model that fits this U-Net (with a mid block); ``decoder=False`` for a
        ControlNet, which has the encoder and middle block only."""
        channels = self.level_channels
        return MotionModuleSpec(
            down_channels=channels, down_counts=list(self.num_res_blocks),
            up_channels=channels[::-1] if decoder else [],
            up_counts=[n + 1 for n in self.num_res_blocks[::-1]] if decoder else [],
            mid_channels=channels[-1], **block_config)

    def block_index(self, kind: str, block: int, index: int) -> tuple[str, int]:
        """The LDM block (``input_blocks`` / ``middle_block`` / ``output_blocks``, index) of a motion block."""
        if kind == "mid":
            return "middle_block", 0
        if kind == "down":
            return "input_blocks", 1 + sum(n + 1 for n in self.num_res_blocks[:block]) + index
        ups = self.num_res_blocks[::-1]
        return "output_blocks", sum(n + 1 for n in ups[:block]) + index

    def check_fits(self, spec: MotionModuleSpec, name: str, decoder: bool = True) -> None:
        """Raise ValueError, naming both layouts, when ``spec`` does not fit this U-Net (or ControlNet)."""
        want = self.motion_spec(decoder)
        got = (spec.down_channels, spec.down_counts, spec.up_channels, spec.up_counts)
        if got != (want.down_channels, want.down_counts, want.up_channels, want.up_counts) or (
                spec.mid_channels not in (None, want.mid_channels)):
            hint = " (an SDXL motion module?)" if len(spec.down_channels) == 3 and spec.down_channels[-1] == 1280 else ""
            raise ValueError(
                f"motion module '{name}' does not fit this model{hint}: it has down blocks with channels "
                f"{spec.down_channels} x {spec.down_counts} modules and up blocks {spec.up_channels} x "
                f"{spec.up_counts}, but the U-Net needs down {want.down_channels} x {want.down_counts} and up "
                f"{want.up_channels} x {want.up_counts} (an SD1.5 U-Net takes SD1.5 motion modules)")
