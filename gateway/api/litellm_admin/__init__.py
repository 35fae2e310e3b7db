"""LiteLLM's admin API (`/key/*`, `/team/*`, `/spend/logs`, `/model/info`, `/health*`) in
LiteLLM's shapes, over the gateway's own keys, teams, request log and router, so scripts
written for the LiteLLM proxy keep working. The README's "LiteLLM admin API" maps each route."""
