"""adaptmem: memory-based adaptation for PyTorch.

Sub-packages (imported on demand; none pulls in an optional dependency at import time):

- :mod:`adaptmem.ops`     pure tensor functions: SRWM, delta rule, linear attention
- :mod:`adaptmem.layers`  ``nn.Module`` layers on top of the ops
- :mod:`adaptmem.memory`  episodic key-value memory, MbPA, neural cache
- :mod:`adaptmem.weights` RNN weight layouts, batched RNNs, zoos, weight encoders
- :mod:`adaptmem.data`    data readers shared by the examples
- :mod:`adaptmem.utils`   checkpoints, logging, schedules, input validation
"""

__version__ = "0.2.0"
