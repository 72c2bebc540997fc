/**
 * The dashboard's HTML and CSS. The HTML holds no data (the script fills it from the event
 * stream) and no inline script or style, as the Content-Security-Policy demands.
 */

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const head = (title: string) =>
  `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<link rel="stylesheet" href="/app.css">
</head>`;

/** The login form; `error` is one of the server's fixed sentences, never the user's input. */
export function loginPage(error?: string): string {
  return `${head('Vigil: log in')}
<body class="login">
<main>
<h1>Vigil</h1>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/login">
<label>Name <input name="name" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button>
</form>
</main>
</body>
</html>
`;
}

/** The header every page shares: the cluster's name, the pages, the stream's state and the data's age, the user. */
type Page = 'now' | 'timeline' | 'actions' | 'doctor';

const header = (current: Page) => {
  const link = (page: Page, href: string, label: string) => `<a href="${href}"${page === current ? ' aria-current="page"' : ''}>${label}</a>`;
  return `<header>
<h1>Vigil <span id="cluster"></span></h1>
<nav>${link('now', '/', 'Now')} ${link('timeline', '/timeline', 'Timeline')} ${link('actions', '/actions', 'Actions')} ${link('doctor', '/doctor', 'Doctor')}</nav>
<p id="conn" class="conn connecting" role="status">connecting…</p>
<p id="age" class="age"></p>
<form method="post" action="/logout"><span id="user"></span> <button type="submit">Log out</button></form>
</header>`;
};

/** A page drawn by /app.js from its event stream: the shared head and header, `main`, the script. */
const livePage = (page: Page, title: string, main: string) => `${head(title)}
<body data-page="${page}">
${header(page)}
<main>
${main}</main>
<script type="module" src="/app.js"></script>
</body>
</html>
`;

/** The "Now" page: tiles and the machine table, drawn by /app.js from `/events`. */
export function nowPage(): string {
  return livePage(
    'now',
    'Vigil: now',
    `<section id="tiles" class="tiles" aria-label="status"></section>
<table id="machines">
<caption>Machines (as <code>vigil status</code>)</caption>
<thead><tr><th>machine</th><th>address</th><th>roles</th><th>app</th><th>database</th><th>disk free</th></tr></thead>
<tbody></tbody>
</table>
`,
  );
}

/** The Timeline: incidents, newest first, drawn by /app.js from `/timeline/events`. */
export function timelinePage(): string {
  return livePage(
    'timeline',
    'Vigil: timeline',
    `<p id="db-history" class="note"></p>
<section id="incidents" aria-label="incidents"></section>
`,
  );
}

/**
 * The Actions page: the pre-flight panel and the forms (switchover, failover, maintenance), drawn
 * by /app.js from `/events`. The forms are drawn once, with the epoch the page showed then; a
 * later move of the cluster only raises a banner, so a decision is never silently re-aimed.
 */
export function actionsPage(): string {
  return livePage(
    'actions',
    'Vigil: actions',
    `<p id="moved" class="error" role="alert" hidden></p>
<table id="preflight">
<caption>Before you act: the app machines now</caption>
<thead><tr><th>machine</th><th>standing</th><th>database</th><th>file sync to it</th></tr></thead>
<tbody></tbody>
</table>
<section id="forms" aria-label="actions"></section>
`,
  );
}

/**
 * The Doctor page: the last report of `vigil doctor` and of the page's own run, per machine,
 * drawn by /app.js from `/doctor/events`; the button runs doctor from the observer.
 */
export function doctorPage(): string {
  return livePage(
    'doctor',
    'Vigil: doctor',
    `<form id="run-doctor" method="post" action="/doctor/run" class="run">
<button type="submit" disabled>Run doctor from the observer</button>
<span id="doctor-state" class="note" role="status"></span>
</form>
<section id="reports" aria-label="doctor reports"></section>
`,
  );
}

/** An action that was not carried out: the server's own sentence (never the user's raw input), and a way back. */
export function refusedPage(message: string, back = '/actions'): string {
  return `${head('Vigil: refused')}
<body>
<main>
<h1>Not done</h1>
<p class="error" role="alert" id="refusal">${esc(message)}</p>
<p><a href="${esc(back)}">Back</a> · <a href="/timeline">Timeline</a></p>
</main>
</body>
</html>
`;
}

export const STYLE_CSS = `:root { color-scheme: light dark; font-family: system-ui, sans-serif; --ok: #1a7f37; --warn: #b08800; --bad: #cf222e; }
body { margin: 0; padding: 1rem 2rem; }
header { display: flex; gap: 1.5rem; align-items: baseline; flex-wrap: wrap; }
header h1 { margin: 0; font-size: 1.4rem; }
header form { margin-left: auto; }
nav a { font-weight: 600; }
.conn { padding: 0.1rem 0.6rem; border-radius: 0.3rem; }
.conn.live { background: var(--ok); color: #fff; }
.conn.connecting, .conn.reconnecting { background: var(--warn); color: #000; }
.age.stale { color: var(--bad); font-weight: 600; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(15rem, 1fr)); gap: 1rem; margin: 1rem 0; }
.tile { border: 1px solid #8884; border-left: 0.5rem solid; border-radius: 0.4rem; padding: 0.6rem 0.9rem; }
.tile.ok { border-left-color: var(--ok); }
.tile.warn { border-left-color: var(--warn); }
.tile.bad { border-left-color: var(--bad); }
.tile h2 { margin: 0; font-size: 0.85rem; font-weight: 500; opacity: 0.8; }
.tile .value { margin: 0.2rem 0; font-size: 1.3rem; font-weight: 700; }
.tile .detail { margin: 0; font-size: 0.8rem; opacity: 0.85; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; font-weight: 600; padding: 0.4rem 0; }
th, td { text-align: left; padding: 0.3rem 0.8rem 0.3rem 0; border-bottom: 1px solid #8883; }
td.bad { color: var(--bad); font-weight: 600; }
td.active { color: var(--ok); font-weight: 700; }
.login main { max-width: 20rem; margin: 4rem auto; }
.login form { display: grid; gap: 0.8rem; }
.login label { display: grid; gap: 0.2rem; }
.error { color: var(--bad); font-weight: 600; }
.note { opacity: 0.8; font-size: 0.9rem; }
.incident { border: 1px solid #8884; border-left: 0.5rem solid; border-radius: 0.4rem; padding: 0.5rem 0.9rem; margin: 0.8rem 0; }
.incident.ok { border-left-color: var(--ok); }
.incident.warn { border-left-color: var(--warn); }
.incident.bad { border-left-color: var(--bad); }
.incident h2 { margin: 0; font-size: 1.05rem; }
.incident .when { margin: 0.1rem 0; font-size: 0.8rem; opacity: 0.8; }
.incident .phases { display: flex; flex-wrap: wrap; gap: 0.4rem; margin: 0.4rem 0; padding: 0; list-style: none; }
.incident .phases li { background: #8882; border-radius: 0.3rem; padding: 0.1rem 0.5rem; font-size: 0.85rem; }
.incident details { margin: 0.3rem 0; }
.incident table { font-size: 0.85rem; }
.incident .acks { margin: 0.3rem 0; padding-left: 1.2rem; font-size: 0.9rem; }
.incident form { display: flex; gap: 0.5rem; margin: 0.4rem 0; }
.incident form input[name=comment] { flex: 1; }
td.database { font-style: italic; }
#forms { display: grid; grid-template-columns: repeat(auto-fit, minmax(20rem, 1fr)); gap: 1rem; margin: 1rem 0; }
.action { border: 1px solid #8884; border-radius: 0.4rem; padding: 0.6rem 0.9rem; display: grid; gap: 0.5rem; align-content: start; }
.action h2 { margin: 0; font-size: 1.05rem; }
.action label { display: grid; gap: 0.2rem; }
.action .fence, .action .command { font-size: 0.85rem; margin: 0; }
.action .command code { overflow-wrap: anywhere; }
.run { display: flex; gap: 1rem; align-items: baseline; margin: 1rem 0; }
.report { border: 1px solid #8884; border-left: 0.5rem solid; border-radius: 0.4rem; padding: 0.5rem 0.9rem; margin: 0.8rem 0; }
.report.ok, .part.ok { border-left-color: var(--ok); }
.report.warn, .part.warn { border-left-color: var(--warn); }
.report.bad, .part.bad { border-left-color: var(--bad); }
.report h2 { margin: 0; font-size: 1.1rem; }
.report .when, .report .scope { margin: 0.1rem 0; font-size: 0.85rem; opacity: 0.85; }
.part { border-left: 0.3rem solid; padding: 0.2rem 0.7rem; margin: 0.6rem 0; }
.part h3 { margin: 0; font-size: 1rem; }
.checks { display: flex; flex-wrap: wrap; gap: 0.3rem; margin: 0.3rem 0; padding: 0; list-style: none; }
.checks li { border-radius: 0.3rem; padding: 0.05rem 0.45rem; font-size: 0.8rem; background: #8882; }
.checks li.fail { background: var(--bad); color: #fff; }
.checks li.warn { background: var(--warn); color: #000; }
.checks li.ok { background: color-mix(in srgb, var(--ok) 25%, transparent); }
.finding { margin: 0.3rem 0 0.5rem; font-size: 0.9rem; }
.finding .what { font-weight: 600; }
.finding.fail .what { color: var(--bad); }
.finding .fix code { overflow-wrap: anywhere; }
`;
