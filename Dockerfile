# Hybrid AI API replica. Build: docker build -t hybrid-ai .
# Stateless: conversations, reviews and the audit log live in PostgreSQL, knowledge in a Chroma
# server, models behind Ollama or OpenAI-compatible servers (see docker-compose.yml).
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements/ requirements/
# torch first, CPU build: anything else may pull a multi-GB CUDA one.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    pip install --no-cache-dir --no-deps -r requirements/lock.txt
COPY pyproject.toml README.md langgraph.json ./
COPY hybrid/ hybrid/
COPY graphs/ graphs/
COPY retrieval/ retrieval/
COPY ui/ ui/
COPY data/ data/
RUN pip install --no-cache-dir --no-deps .
# MiniLM's ONNX graph, exported at build time into /usr/local/share/hybrid (the image is read-only at run).
RUN python -c "from retrieval.embeddings import prepare_onnx; prepare_onnx()"

FROM python:3.11-slim
COPY --from=build /usr/local /usr/local
COPY --from=build /app/data /app/data
WORKDIR /app
ENV HYBRID_DATA_DIR=/var/lib/hybrid HYBRID_ROUTER_PATH=/app/data/router/default HYBRID_VERIFIER_PATH=/app/data/verifier/default STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
CMD ["hybrid", "serve", "--host", "0.0.0.0", "--port", "8000"]
