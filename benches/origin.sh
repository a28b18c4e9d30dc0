# Sourced by the bench scripts: a tiny nginx origin on loopback, one worker,
# answering every request with a 3-byte body ("ok\n"), keep-alive without
# limit. start_origin DIR PORT writes its config under DIR and starts it
# daemonised (pid in DIR/origin.pid); stop_origin DIR stops it.
start_origin() {
  local dir=$1 port=$2
  cat > "$dir/origin.conf" <<NGINX
daemon on; worker_processes 1; pid $dir/origin.pid; error_log $dir/origin.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$port; location / { return 200 "ok\\n"; } } }
NGINX
  nginx -c "$dir/origin.conf"
}

stop_origin() {
  kill "$(cat "$1/origin.pid" 2>/dev/null)" 2>/dev/null || true
}
