# Sourced by benches/callgrind.sh and benches/paired.sh: predictor, nginx
# and HAProxy configured alike in front of one origin (benches/origin.sh):
# one worker each, a keep-alive pool to the origin, the Host
# bench.example mapped to it (the configs of benches/peers/peers.sh, with
# one pool). Each function writes its config under DIR and sets
# `proxy_args` to the command that runs it in the foreground.

# predictor_conf DIR ORIGIN PORT [H2PORT] [ROUTE]: HTTP/1.1 (and h2c by
# prior knowledge) on PORT, h2c alone on H2PORT if given; every tenant in
# state ROUTE (default migrated). BIN is the binary.
predictor_conf() {
  local dir=$1 origin=$2 port=$3 h2port=${4:-} route=${5:-migrated}
  mkdir -p "$dir"
  printf 'bench.example\tt1\tweb\tf1\n' > "$dir/tenants.tsv"
  echo "default = \"$route\"" > "$dir/migration.toml"
  {
    echo 'tenants = "tenants.tsv"'
    echo 'migration = "migration.toml"'
    echo '[proxy]'
    echo 'workers = 1'
    echo '[[listen]]'
    echo "address = \"127.0.0.1:$port\""
    if [ -n "$h2port" ]; then
      echo '[[listen]]'
      echo "address = \"127.0.0.1:$h2port\""
      echo 'protocol = "h2c"'
    fi
    echo '[tiers.web]'
    echo 'pool = "web"'
    echo '[pools.web]'
    echo "servers = [{ id = \"web-1\", address = \"127.0.0.1:$origin\" }]"
  } > "$dir/predictor.toml"
  proxy_args=("$BIN" run --config "$dir")
}

# nginx_conf DIR ORIGIN PORT H2PORT: HTTP/1.1 on PORT, h2c on H2PORT
# (nginx's `http2` listener without TLS takes only HTTP/2).
nginx_conf() {
  local dir=$1 origin=$2 port=$3 h2port=$4
  mkdir -p "$dir/tmp"
  cat > "$dir/nginx.conf" <<NGINX
worker_processes 1; daemon off; master_process off;
pid $dir/nginx.pid; error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
  access_log off; server_tokens off;
  client_body_temp_path $dir/tmp/body; proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fcgi; uwsgi_temp_path $dir/tmp/uwsgi; scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 100000000; keepalive_timeout 300s;
  map \$host \$pool { default be_default; bench.example be_web; }
  upstream be_web { server 127.0.0.1:$origin; keepalive 256; keepalive_requests 100000000; keepalive_timeout 300s; }
  upstream be_default { server 127.0.0.1:$origin; keepalive 256; }
  server {
    listen 127.0.0.1:$port backlog=4096;
    listen 127.0.0.1:$h2port http2 backlog=4096;
    location / { proxy_pass http://\$pool; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
  proxy_args=("$(command -v nginx)" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log")
}

# haproxy_conf DIR ORIGIN PORT H2PORT: HTTP/1.1 on PORT, h2c on H2PORT
# (`proto h2`).
haproxy_conf() {
  local dir=$1 origin=$2 port=$3 h2port=$4
  mkdir -p "$dir"
  printf 'bench.example be_web\n' > "$dir/hosts.map"
  cat > "$dir/haproxy.cfg" <<HAPROXY
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend fe
    bind 127.0.0.1:$port
    bind 127.0.0.1:$h2port proto h2
    use_backend %[req.hdr(host),lower,map($dir/hosts.map,be_default)]
backend be_web
    server s1 127.0.0.1:$origin
backend be_default
    server s1 127.0.0.1:$origin
HAPROXY
  proxy_args=("$(command -v haproxy)" -db -f "$dir/haproxy.cfg")
}
