"""Signals at three levels: per exchange (``exchange``), per account (``account``), per cluster (``linking``)."""
