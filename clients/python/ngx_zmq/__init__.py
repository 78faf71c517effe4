"""ngx_zmq: the Python client of the ngx_zmq gateway.

    from ngx_zmq import Client, AdminClient
    from ngx_zmq.paginator import ListPaginator, ZSetPaginator
"""

from .client import *                      # noqa: F401,F403
from .client import __all__ as _client_all

__version__ = "0.1.0"
__all__ = list(_client_all)
