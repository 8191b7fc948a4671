"""chargeback: an internal billing engine.

Providers charge departments for services; the accounting office closes each month,
posts a balanced, hash-chained journal and proves that internal spend and internal
revenue net to zero.
"""

__version__ = "0.1.0"
