"""`vidclip serve`: the search server and web app over one store (vidclip/server).

Wired into vidclip/cli/main.py with `add_parsers(sub)` and `COMMANDS`.  Heavy imports (the model,
FastAPI, uvicorn) happen inside the command, so importing this module stays cheap.
"""

from __future__ import annotations

from vidclip.cli.arguments import add_model_args, add_store_args, open_library


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("serve", help="a search server and web app for a store (http://127.0.0.1:8000)")
    add_store_args(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, this machine only); any other needs --token")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--token", help="every request must carry it (Bearer header, or open the page once as "
                                   "/?token=TOKEN); default $VIDCLIP_SERVE_TOKEN")
    add_model_args(p)


def cmd_serve(args) -> int:
    import logging
    import socket

    from vidclip.server.access import serve_config

    config = serve_config(args.host, args.port, args.token)  # refused before the model loads
    lib = open_library(args, create=False)
    import uvicorn

    from vidclip.server.app import create_app

    app = create_app(lib, config)
    family = socket.AF_INET6 if ":" in config.host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host.strip("[]"), config.port))
    except OSError as exc:
        from vidclip.errors import InputError

        raise InputError(f"cannot listen on {config.host}:{config.port} ({exc.strerror})") from None
    port = sock.getsockname()[1]
    shown = f"[{config.host}]" if family == socket.AF_INET6 and not config.host.startswith("[") else config.host
    logging.getLogger("vidclip").info("serving %s on http://%s:%d/%s", lib.uri, shown, port,
                                      "?token=..." if config.token else "")
    print(f"http://{shown}:{port}/", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
    return 0


COMMANDS = {"serve": cmd_serve}
