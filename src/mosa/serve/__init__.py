"""`mosa serve`: a masked-diffusion LM behind an OpenAI-compatible endpoint (docs/serve.md).

app.py        the FastAPI application: routes, checks, limits, the API key, streaming
protocol.py   the request bodies (pydantic) and OpenAI's error shape
engine.py     the sampling thread: batches of compatible requests, one canvas batch at a time
answers.py    canvas -> text, finish reason, token counts, and the streamed committed prefix
"""

from mosa.serve.app import ServeSettings, create_app, served_provenance

__all__ = ["ServeSettings", "create_app", "served_provenance"]
