"""pcq core: the producer/consumer pattern, independent of the queue it runs over."""

__version__ = "0.1.0"
