"""The artefacts shipped with Hybrid AI, installed as package data under the name `hybrid.shipped`.

`router/default`, `verifier/default` (small tier) and `verifier/large` are the router and verifiers
the product serves until its settings or the registry name others, tuned together for the embedded
models (`manifest.json` says on what); `knowledge/` is the sample knowledge base. In a checkout this
folder is the repository's `data/`; in an installed wheel it is `hybrid/shipped/`.
"""
