#!/usr/bin/env bash
# Starts Tally in embedded mode: SQLite file under src/Tally/data, in-process queue and lock,
# the built-in sandbox upstreams, and demo data. Needs only the .NET 10 SDK.
#   scripts/start.sh            listen on http://localhost:5080
#   TALLY_URL=http://0.0.0.0:8080 scripts/start.sh
set -euo pipefail
cd "$(dirname "$0")/.."

url="${TALLY_URL:-http://localhost:5080}"
export ASPNETCORE_ENVIRONMENT="${ASPNETCORE_ENVIRONMENT:-Development}"

dotnet build src/Tally -c Release --nologo -v quiet
token() { dotnet run --project src/Tally -c Release --no-build --no-launch-profile -- token "$@"; }

cat <<EOT

Tally (embedded) starting on $url
  admin token:          $(token --role admin)
  demo guardian token:  $(token --sub 11111111-1111-1111-1111-111111111111 --role guardian --role user)
  console sign-in:      $(dotnet run --project src/Tally -c Release --no-build --no-launch-profile -- signin-link --url "$url")
                        (one-time, for ten minutes; another: dotnet run --project src/Tally -- signin-link)
  API docs:             $url/docs

EOT
exec dotnet run --project src/Tally -c Release --no-build --no-launch-profile --urls "$url"
