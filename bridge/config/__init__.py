"""The YAML contract: typed models (`schema`), loading with line numbers (`load`), and
errors that name their path and line (`report`)."""

from imbridge.config.load import load_config, parse_config
from imbridge.config.schema import Config

__all__ = ["Config", "load_config", "parse_config"]
