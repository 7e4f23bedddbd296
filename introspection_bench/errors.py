"""The project's error hierarchy: every message names the bad value and the fix."""

from __future__ import annotations


class IntrospectionBenchError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelSpecError(IntrospectionBenchError):
    """A model spec string is malformed, or names a model that cannot be found."""


class UnsupportedArchitectureError(IntrospectionBenchError):
    """The model's architecture has no known decoder-layer path."""


class LayerOutOfRangeError(IntrospectionBenchError):
    """A layer index or depth fraction falls outside the model's decoder layers."""


class InjectionError(IntrospectionBenchError):
    """An injection is malformed: non-finite strength, bad window, wrong vector shape."""


class StimuliError(IntrospectionBenchError):
    """The stimuli file is missing fields, empty lists or unknown placeholders."""


class ConfigError(IntrospectionBenchError):
    """A run option has a bad value or a bad combination with another option."""


class JudgeError(IntrospectionBenchError):
    """A judge cannot be built or reached (unknown name, endpoint down)."""


class RecordsError(IntrospectionBenchError):
    """Records on disk are malformed, fail their schema, or belong to another configuration."""


class GradingInputError(IntrospectionBenchError):
    """A file of responses to grade has a bad line: not JSON, a missing or mistyped field."""
