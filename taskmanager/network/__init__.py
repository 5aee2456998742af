"""The data plane: framed buffers over TCP between slot workers, credit-based flow control, partitioners."""
