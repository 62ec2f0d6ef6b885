#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback, for the ACL store's tests.
#
#   scripts/pg-cluster.sh start DIR    initdb into DIR (once), start it on
#                                      a free port, print its URL
#   scripts/pg-cluster.sh stop DIR     stop it (fast: clients are cut off)
#   scripts/pg-cluster.sh restart DIR  start it again on the same port
#
# PostgreSQL refuses to run as root, so as root the cluster runs as
# `nobody`. The user `averyws` logs in with a password over TCP
# (scram-sha-256); the password is in DIR/password. TCP takes TLS too,
# with a certificate for 127.0.0.1 and localhost issued by a throwaway CA
# (DIR/ca.crt, the one a client trusts), or plain TCP.
set -euo pipefail
command=${1:?start, stop or restart}
dir=${2:?the cluster directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "pg-cluster: no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 1
fi
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}
start() {
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
    -o "-p $(cat "$dir/port") -k $dir -c listen_addresses=127.0.0.1 -c ssl=on \
        -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" start >/dev/null
}
case $command in
start)
  mkdir -p "$dir"
  if [ ! -d "$dir/data" ]; then
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$dir/password"
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' >"$dir/port"
    key="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    openssl req -x509 $key -days 2 -subj /CN=averyws-test-ca \
      -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    openssl req $key -subj /CN=localhost -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
    chmod 600 "$dir/server.key" "$dir/ca.key"
    [ "$(id -u)" = 0 ] && chown -R nobody "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U averyws --pwfile="$dir/password" \
      --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --no-sync >"$dir/initdb.log"
  fi
  start
  echo "postgres://averyws:$(cat "$dir/password")@127.0.0.1:$(cat "$dir/port")/postgres"
  ;;
stop)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  ;;
restart)
  start
  ;;
*)
  echo "pg-cluster: unknown command $command" >&2
  exit 2
  ;;
esac
