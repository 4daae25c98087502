"""The artefacts shipped with Hybrid AI, installed as package data under the name `hybrid.shipped`.

`router/default` and `verifier/default` are the learned router and verifier the product uses until
its settings name others; `knowledge/` is the sample knowledge base. In a checkout this folder is
the repository's `data/`; in an installed wheel it is `hybrid/shipped/`.
"""
