"""``edgechat serve``: an OpenAI-compatible local server (uvicorn + Starlette) on the same engine.

command.py (the subcommand's options), server.py (start, stop), app.py (the ASGI app), schema.py
(request bodies), jobs.py (a request run on the engine), worker.py (the engine thread and its queue),
responses.py (OpenAI's objects), sampling.py (penalties, logprobs), stops.py (stop strings),
errors.py (OpenAI's error shape).
"""
