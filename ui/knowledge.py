"""Knowledge: what the knowledge base holds, adding files to it, and searching it directly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from hybrid import api
from hybrid.errors import HybridError
from ui.components import api_key, plain

state = st.session_state


class ProgressBar:
    """`api.ingest`'s progress hooks drawn as a Streamlit progress bar, one step per file."""

    def __init__(self, total_files: int) -> None:
        self.total = max(total_files, 1)
        self.done = 0
        self.chunks = 0
        self.bar = st.progress(0.0, text="Reading files…")

    def file_started(self, path: Path, chunks: int) -> None:
        self.done += 1
        self.bar.progress(min(self.done / self.total, 1.0), text=f"{path.name}: {chunks} chunk(s)")

    def chunks_stored(self, count: int) -> None:
        self.chunks += count
        self.bar.progress(min(self.done / self.total, 1.0), text=f"{self.chunks} new chunk(s) embedded")


def ingest(paths: list[Path], sync: bool) -> None:
    """Ingest with a progress bar; keep the report to show after the page reloads."""
    progress = ProgressBar(len(api.files_under(paths)))
    report = api.ingest(paths, sync=sync, progress=progress, key=api_key())
    progress.bar.progress(1.0, text="Done")
    state.ingest_report = report


def show_report(report: api.IngestReport) -> None:
    (st.success if report.ok else st.warning)(report.summary().splitlines()[0])
    cols = st.columns(4)
    cols[0].metric("Chunks added", report.chunks_added)
    cols[1].metric("Unchanged", report.chunks_unchanged)
    cols[2].metric("Removed", report.chunks_removed)
    cols[3].metric("Files failed", len(report.failed))
    if report.failed:
        st.dataframe(
            pd.DataFrame([{"file": f, "why": why} for f, why in report.failed.items()]), hide_index=True
        )


def add_documents() -> None:
    """Upload files, or name a file or folder on the server, and ingest them."""
    if not api.caller(api_key()).admin:  # one knowledge base serves every tenant
        st.info("Only an admin key adds documents to the knowledge base.", icon=":material/lock:")
        return
    # A form, so what was typed is read when the button is pressed (not on the next rerun).
    with st.form("ingest"):
        uploads = st.file_uploader("Upload files", accept_multiple_files=True, key="uploads")
        folder = st.text_input(
            "…or a file or folder on the server", placeholder="/path/to/docs", key="folder"
        )
        sync = st.checkbox(
            "Also remove chunks of files that are gone or changed under these paths", key="sync"
        )
        submitted = st.form_submit_button("Ingest", icon=":material/upload:", type="primary")
    if submitted:
        if not (uploads or folder.strip()):
            st.warning("Choose files to upload or name a file or folder first.")
        else:
            try:
                paths = api.save_uploads((f.name, f.getvalue()) for f in uploads or [])
                if folder.strip():
                    paths.append(Path(folder.strip()).expanduser())
                ingest(paths, sync)
            except (HybridError, ValueError) as exc:
                st.error(str(exc))
    if "ingest_report" in state:
        show_report(state.ingest_report)


def search() -> None:
    """Query the knowledge base directly, as the graph's retrieval would."""
    with st.form("search"):
        query = st.text_input("Search the knowledge base", key="query")
        cols = st.columns(2)
        k = cols[0].slider("Passages", 1, 20, 5, key="k")
        mode = cols[1].selectbox("Ranking", ["hybrid", "dense", "bm25"], key="mode")
        submitted = st.form_submit_button("Search", icon=":material/search:")
    if not (submitted and query.strip()):
        return
    try:
        hits = api.search(query, k=k, retrieval_mode=mode)
    except HybridError as exc:
        st.error(str(exc))
        return
    if not hits:
        st.info("Nothing found.")
    for rank, hit in enumerate(hits, start=1):
        with st.container(border=True):
            meta = hit.get("metadata") or {}
            section = f" · {meta['section']}" if meta.get("section") else ""
            st.markdown(
                f"**{rank}. {Path(hit['source']).name}{section}** · score {hit['score']:.3f} · "
                f"similarity {hit['similarity']:.2f}"
            )
            st.caption(plain(hit["text"], 800))
            st.caption(f"`{hit['source']}`")


def collection() -> None:
    """Chunks and files in the collection, with the ones flagged at ingestion."""
    try:
        stats = api.collection_stats()
    except HybridError as exc:
        st.error(str(exc))
        return
    cols = st.columns(3)
    cols[0].metric("Chunks", stats.chunks)
    cols[1].metric("Files", len(stats.sources))
    cols[2].metric("Ingestions that changed it", stats.version)
    st.caption(f"Collection `{stats.name}` at `{stats.location}`")
    if stats.sources:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "file": Path(s.source).name,
                        "chunks": s.chunks,
                        "sensitive": s.sensitive,
                        "injection": s.injection,
                        "modified": s.modified,
                        "path": s.source,
                    }
                    for s in stats.sources
                ]
            ),
            hide_index=True,
        )


st.title("Knowledge base")
overview = st.container()  # drawn last, so it counts what this run ingested
add, find = st.tabs(["Add documents", "Search"])
with add:
    add_documents()
with find:
    search()
with overview:
    collection()
