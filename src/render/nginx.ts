/**
 * nginx.conf for app machines: the application's web front, proxying to the reference app on
 * loopback. Runs in the foreground (`-g 'daemon off;'` from the caller: the systemd unit or the
 * lab), and keeps every path it writes under Vigil's roots, so it needs neither /var/lib/nginx
 * nor /run/nginx.pid and does not collide with a distribution nginx on the same machine.
 *
 * nginx runs only on the active app node (the agent starts and stops it), so its timeouts are
 * short: a request stuck on a dying app must not keep a fenced node answering.
 */
import type { Cluster, Machine } from '../config/schema.ts';
import { PATHS, ROOTS } from '../layout/paths.ts';
import { REFAPP_PORT } from '../layout/network.ts';
import { appPort, nginxCertPaths } from '../layout/backend.ts';
import { HEADER, type RenderedFile } from './file.ts';

/** Directories nginx writes to; they must exist before it starts (systemd or the lab creates them). */
export const NGINX_DIRS = {
  /** pid file; systemd's RuntimeDirectory=vigil/nginx */
  run: `${ROOTS.run}/nginx`,
  /** request-body and proxy temp files (uploads are spooled here); StateDirectory=vigil/nginx */
  state: `${ROOTS.data}/nginx`,
  log: ROOTS.log,
} as const;

export const NGINX_ERROR_LOG = `${NGINX_DIRS.log}/nginx-error.log`;
export const NGINX_ACCESS_LOG = `${NGINX_DIRS.log}/nginx-access.log`;
export const NGINX_PID = `${NGINX_DIRS.run}/nginx.pid`;
/** Largest request body (ticket attachments) nginx accepts. */
export const MAX_BODY = '100m';

/**
 * The server's listen lines: plain HTTP on `application.port`, or only HTTPS on
 * `application.backendTls.port` with the machine's certificate (then nothing answers in clear).
 */
function listen(cluster: Cluster): string {
  const paths = nginxCertPaths(cluster);
  if (!paths) return `        listen ${cluster.application.port};`;
  return [
    `        listen ${appPort(cluster)} ssl;`,
    `        ssl_certificate ${paths.cert};`,
    `        ssl_certificate_key ${paths.key};`,
    '        ssl_protocols TLSv1.2 TLSv1.3;',
    // HAProxy keeps connections open (keep-alive) and reuses them; resumption saves the handshake of new ones.
    '        ssl_session_cache shared:vigil_tls:1m;',
    '        ssl_session_timeout 10m;',
  ].join('\n');
}

export function nginxConfig(cluster: Cluster): string {
  const s = NGINX_DIRS.state;
  return `# ${HEADER}
worker_processes auto;
pid ${NGINX_PID};
error_log ${NGINX_ERROR_LOG} warn;

events {
    worker_connections 1024;
}

http {
    default_type application/octet-stream;
    access_log ${NGINX_ACCESS_LOG};
    server_tokens off;
    sendfile on;
    keepalive_timeout 30s;

    # Every temp path set explicitly: the compiled-in ones are under /var/lib/nginx.
    client_body_temp_path ${s}/client_body;
    proxy_temp_path ${s}/proxy;
    fastcgi_temp_path ${s}/fastcgi;
    uwsgi_temp_path ${s}/uwsgi;
    scgi_temp_path ${s}/scgi;

    # Ticket attachments are uploaded through here.
    client_max_body_size ${MAX_BODY};
    client_body_timeout 30s;

    upstream refapp {
        server 127.0.0.1:${REFAPP_PORT};
        keepalive 16;
    }

    server {
${listen(cluster)}

        location / {
            proxy_pass http://refapp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # Set by HAProxy's https frontend; passed on so the app builds https links.
            proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;
            # Short: an app that does not answer must fail the health check fast, not hang it.
            proxy_connect_timeout 2s;
            proxy_send_timeout 30s;
            proxy_read_timeout 30s;
        }
    }
}
`;
}

export function renderNginx(cluster: Cluster, machine: Machine): RenderedFile {
  return { machine: machine.name, path: PATHS.nginxConfig, mode: 0o644, owner: 'root:root', content: nginxConfig(cluster) };
}
