#!/bin/sh
# As the official image's 20-envsubst-on-templates.sh: render every
# NGINX_ENVSUBST_TEMPLATE_DIR/*.template into NGINX_ENVSUBST_OUTPUT_DIR with
# envsubst, restricted to the environment names matching NGINX_ENVSUBST_FILTER.
set -eu
template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
filter="${NGINX_ENVSUBST_FILTER:-}"
[ -d "$template_dir" ] || exit 0
defined=$(printf '${%s} ' $(awk "END { for (name in ENVIRON) { print ( name ~ /${filter}/ ) ? name : \"\" } }" </dev/null))
for template in "$template_dir"/*"$suffix"; do
    [ -f "$template" ] || continue
    name=$(basename "$template" "$suffix")
    envsubst "$defined" < "$template" > "$output_dir/$name"
done
