"""ExecutionConfig: ``env.get_config()`` (``pyflink.common.ExecutionConfig``), a Configuration with PyFlink's
named setters for the options jobs set most."""

from __future__ import annotations

from weir.common.configuration import Configuration

AUTO_WATERMARK_INTERVAL = "pipeline.auto-watermark-interval"


class ExecutionConfig(Configuration):
    def set_auto_watermark_interval(self, interval: int) -> ExecutionConfig:
        """How often (ms of processing time) sources and timestamp assigners emit watermarks; 0 disables."""
        if interval < 0:
            raise ValueError(f"the auto-watermark interval must be >= 0 ms, got {interval}")
        self.set_integer(AUTO_WATERMARK_INTERVAL, int(interval))
        return self

    def get_auto_watermark_interval(self) -> int:
        return self.get_integer(AUTO_WATERMARK_INTERVAL, 200)

    def set_global_job_parameters(self, global_job_parameters: dict[str, str]) -> ExecutionConfig:
        for k, v in global_job_parameters.items():
            self.set_string(k, str(v))
        return self

    def get_global_job_parameters(self) -> dict[str, str]:
        return self.to_dict()
