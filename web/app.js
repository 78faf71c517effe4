/*
 * ngx_zmq web-admin: a client of the admin REST API, nothing more.
 *
 * The API is at ../api/ relative to this page (override with
 * <meta name="zmq-api" content="...">); credentials live in
 * sessionStorage and go in the Authorization or API-key header of each
 * fetch(). Pages are routed by the URL's hash (#/amqp_def, #/status, ...).
 */

'use strict';

(function () {

    var h = ZF.h;

    var KINDS = {
        amqp_def: {title: 'AMQP connection definitions', short: 'Definitions: AMQP'},
        amqp_outconn: {title: 'Outgoing AMQP connections', short: 'Outgoing: AMQP'},
        http_outconn: {title: 'Outgoing HTTP connections', short: 'Outgoing: HTTP'},
        amqp_channel: {title: 'AMQP channels', short: 'Channels: AMQP'},
        rest_channel: {title: 'REST channels', short: 'Channels: REST'},
        service: {title: 'Services', short: 'Services'},
        security: {title: 'Security definitions', short: 'Security'},
        startup: {title: 'Startup services', short: 'Startup'},
        stomp_def: {title: 'STOMP connection definitions', short: 'Definitions: STOMP'},
        stomp_outconn: {title: 'Outgoing STOMP connections', short: 'Outgoing: STOMP'},
        stomp_channel: {title: 'STOMP channels', short: 'Channels: STOMP'}
    };

    var MENU = [
        {href: '#/status', text: 'Status'},
        {group: 'Connections', items: [
            {group: 'Definitions', items: [
                {href: '#/amqp_def', text: 'AMQP'},
                {href: '#/stomp_def', text: 'STOMP'}]},
            {group: 'Outgoing', items: [
                {href: '#/amqp_outconn', text: 'AMQP'},
                {href: '#/http_outconn', text: 'HTTP'},
                {href: '#/stomp_outconn', text: 'STOMP'}]},
            {group: 'Channels', items: [
                {href: '#/amqp_channel', text: 'AMQP'},
                {href: '#/rest_channel', text: 'REST'},
                {href: '#/stomp_channel', text: 'STOMP'}]}]},
        {href: '#/service', text: 'Services'},
        {href: '#/security', text: 'Security'},
        {href: '#/startup', text: 'Startup'},
        {href: '#/import', text: 'Import / export'}
    ];

    var STORE = 'ngx_zmq.admin';

    var S = {
        auth: null,         /* {method: basic|apikey|bearer, ...} */
        role: null,         /* admin, viewer */
        doc: null,          /* the OpenAPI document */
        base: null,         /* the API's base URL */
        timer: null,        /* the status page's refresh */
        pending: null,      /* [text, class] for the next page's flash */
        form: null,         /* the edit form shown: {kind, name, f, el} */
        names: {}           /* kind -> [names] for the datalists */
    };

    function apiBase() {
        var m = document.querySelector('meta[name="zmq-api"]');
        return new URL(m ? m.getAttribute('content') : '../api/',
                       window.location.href).href;
    }

    /* ------------------------------------------------------------ API */

    function authHeaders(a) {
        var hd = {};
        if (!a) {
            return hd;
        }
        if (a.method === 'basic') {
            hd.Authorization = 'Basic ' + btoa(unescape(encodeURIComponent(
                a.username + ':' + a.password)));
        } else if (a.method === 'bearer') {
            hd.Authorization = 'Bearer ' + a.token;
        } else if (a.method === 'apikey') {
            hd[a.header || 'X-API-Key'] = a.key;
        }
        return hd;
    }

    /* api('GET', 'amqp_def', {query, body, headers}) -> {status, data,
     * etag, headers}; a 401 signs out */
    function api(method, path, opt, authOverride) {
        var url = new URL(path, S.base), hd, k, init;

        opt = opt || {};
        for (k in opt.query || {}) {
            if (opt.query[k] !== undefined && opt.query[k] !== '') {
                url.searchParams.set(k, opt.query[k]);
            }
        }
        hd = authHeaders(authOverride || S.auth);
        for (k in opt.headers || {}) {
            hd[k] = opt.headers[k];
        }
        init = {method: method, headers: hd, credentials: 'omit',
                cache: 'no-store'};
        if (opt.body !== undefined) {
            init.body = typeof opt.body === 'string' ? opt.body
                        : JSON.stringify(opt.body);
            hd['Content-Type'] = 'application/json';
        }
        return fetch(url.href, init).then(function (r) {
            return r.text().then(function (t) {
                var data = null;
                try {
                    data = t ? JSON.parse(t) : null;
                } catch (e) {
                    data = {error: 'bad_answer', message: 'HTTP ' + r.status
                            + ': ' + t.slice(0, 200)};
                }
                var res = {status: r.status, ok: r.ok, data: data,
                           etag: r.headers.get('ETag'),
                           retryAfter: r.headers.get('Retry-After')};
                if (r.status === 401 && !authOverride) {
                    signOut('Your credentials were refused: sign in again.');
                    throw {handled: true};
                }
                if (r.status === 403 && method !== 'GET') {
                    setRole('viewer');
                }
                return res;
            });
        }, function (e) {
            return {status: 0, ok: false,
                    data: {error: 'network', message:
                           'the gateway cannot be reached (' + e.message
                           + ')'}};
        });
    }

    function errText(res) {
        var d = res.data || {};
        if (res.status === 403) {
            return 'Refused: your role (viewer) may only read.';
        }
        return (d.message || d.error || ('HTTP ' + res.status))
               + (d.error && d.message ? ' (' + d.error + ')' : '');
    }

    function kindPath(kind, name, op) {
        return kind + (name !== undefined ? '/' + encodeURIComponent(name)
                                          : '')
               + (op ? '/' + op : '');
    }

    function hasPath(p) {
        return S.doc && Object.prototype.hasOwnProperty.call(S.doc.paths,
                                                                '/api/' + p);
    }

    /* ------------------------------------------------------- session */

    function saveSession() {
        sessionStorage.setItem(STORE, JSON.stringify({auth: S.auth,
                                                      role: S.role}));
    }

    function loadSession() {
        try {
            var s = JSON.parse(sessionStorage.getItem(STORE) || 'null');
            if (s && s.auth) {
                S.auth = s.auth;
                S.role = s.role || 'admin';
            }
        } catch (e) {
            sessionStorage.removeItem(STORE);
        }
    }

    function setRole(role) {
        if (S.role === role) {
            return;
        }
        S.role = role;
        saveSession();
        renderHeader();
        document.body.classList.toggle('viewer', role === 'viewer');
    }

    function isViewer() {
        return S.role === 'viewer';
    }

    function signOut(msg) {
        S.auth = null;
        S.role = null;
        S.doc = null;
        S.form = null;
        sessionStorage.removeItem(STORE);
        /* nothing the session showed stays in the page: open dialogs
         * (a typed password), the names the datalists suggested */
        document.querySelectorAll('dialog, datalist').forEach(function (x) {
            if (x.open) {
                x.close();
            }
            x.remove();
        });
        stopTimer();
        renderHeader();
        showSignIn(msg);
    }

    function principal() {
        var a = S.auth;
        if (!a) {
            return '';
        }
        return a.method === 'basic' ? a.username
               : a.method === 'apikey' ? 'API key' : 'token';
    }

    /* ------------------------------------------------------ chrome */

    function $(sel) {
        return document.querySelector(sel);
    }

    function main() {
        return $('#main');
    }

    function flash(text, kind) {
        var f = $('#flash');
        f.className = 'flash ' + (kind || 'info');
        f.textContent = text;
        f.hidden = !text;
    }

    function renderHeader() {
        var u = $('#user');
        u.textContent = '';
        if (!S.auth) {
            $('#nav').hidden = true;
            return;
        }
        $('#nav').hidden = false;
        u.appendChild(h('span', {class: 'who', text: principal()}));
        u.appendChild(h('span', {class: 'role role-' + S.role,
                                 id: 'role', text: S.role === 'viewer'
                                 ? 'viewer: read-only' : S.role}));
        u.appendChild(h('button', {type: 'button', id: 'signout',
                                   class: 'link',
                                   onclick: function () {
                                       signOut('Signed out.');
                                   }}, 'Sign out'));
    }

    function renderNav() {
        function items(list) {
            return h('ul', {}, list.map(function (it) {
                if (it.group) {
                    return h('li', {class: 'group'},
                             h('span', {class: 'group-name',
                                        text: it.group}),
                             items(it.items));
                }
                return h('li', {}, h('a', {href: it.href,
                                           'data-href': it.href,
                                           text: it.text}));
            }));
        }
        var nav = $('#nav');
        nav.textContent = '';
        nav.appendChild(items(MENU));
    }

    function markNav(route) {
        document.querySelectorAll('#nav a').forEach(function (a) {
            var on = a.getAttribute('data-href') === '#/' + route;
            if (on) {
                a.setAttribute('aria-current', 'page');
            } else {
                a.removeAttribute('aria-current');
            }
        });
    }

    function page(title, sub) {
        var m = main();
        m.textContent = '';
        flash(S.pending ? S.pending[0] : '', S.pending ? S.pending[1] : '');
        S.pending = null;
        m.appendChild(h('h1', {id: 'page-title', tabindex: '-1'}, title));
        if (sub) {
            m.appendChild(h('p', {class: 'sub', text: sub}));
        }
        document.title = title + ' · ngx_zmq admin';
        return m;
    }

    /* a modal <dialog>; buttons: [{text, cls, onclick(dialog)}] */
    function modal(title, content, buttons) {
        var d = h('dialog', {class: 'modal', 'aria-labelledby':
                             'modal-title'}),
            f = h('form', {method: 'dialog', novalidate: true});
        d.appendChild(f);
        f.appendChild(h('h2', {id: 'modal-title', text: title}));
        f.appendChild(h('div', {class: 'modal-body'}, content));
        var row = h('div', {class: 'buttons'});
        (buttons || []).forEach(function (b) {
            row.appendChild(h('button', {
                type: b.submit ? 'submit' : 'button',
                class: b.cls || '', id: b.id,
                onclick: function (ev) {
                    if (b.onclick) {
                        ev.preventDefault();
                        b.onclick(d);
                    }
                }
            }, b.text));
        });
        row.appendChild(h('button', {type: 'button', class: 'secondary',
                                     onclick: function () { d.close(); }},
                          'Close'));
        f.appendChild(row);
        d.addEventListener('close', function () { d.remove(); });
        document.body.appendChild(d);
        d.showModal();
        return d;
    }

    /* -------------------------------------------------------- sign in */

    function showSignIn(msg) {
        stopTimer();
        var m = page('Sign in'), form, method, err, fields = {};
        markNav('');

        function row(id, text, input, hint) {
            return h('div', {class: 'field', 'data-for': id},
                     h('label', {for: id, text: text}), input,
                     hint ? h('p', {class: 'hint', text: hint}) : null);
        }

        method = h('select', {id: 'signin-method', name: 'method'},
                   h('option', {value: 'basic',
                                text: 'Username and password'}),
                   h('option', {value: 'apikey', text: 'API key'}),
                   h('option', {value: 'bearer', text: 'Bearer token (JWT)'}));
        fields.username = h('input', {id: 'signin-username', name: 'username',
                                      autocomplete: 'username'});
        fields.password = h('input', {id: 'signin-password', type: 'password',
                                      name: 'password',
                                      autocomplete: 'current-password'});
        fields.key = h('input', {id: 'signin-key', type: 'password',
                                 name: 'key', autocomplete: 'off'});
        fields.header = h('input', {id: 'signin-header', name: 'header',
                                    value: 'X-API-Key'});
        fields.token = h('textarea', {id: 'signin-token', name: 'token',
                                      rows: 3});
        err = h('p', {id: 'signin-error', class: 'error', role: 'alert',
                      hidden: !msg, text: msg || ''});

        var groups = {
            basic: h('div', {}, row('signin-username', 'Username',
                                    fields.username),
                     row('signin-password', 'Password', fields.password)),
            apikey: h('div', {}, row('signin-key', 'API key', fields.key),
                      row('signin-header', 'Header', fields.header,
                          'the security definition\'s header')),
            bearer: h('div', {}, row('signin-token', 'Token', fields.token))
        };

        function show() {
            var k;
            for (k in groups) {
                groups[k].hidden = k !== method.value;
            }
        }
        method.addEventListener('change', show);

        form = h('form', {id: 'signin', class: 'card narrow', novalidate: true,
                          onsubmit: function (ev) {
                              ev.preventDefault();
                              var a = {method: method.value};
                              if (a.method === 'basic') {
                                  a.username = fields.username.value;
                                  a.password = fields.password.value;
                              } else if (a.method === 'apikey') {
                                  a.key = fields.key.value.trim();
                                  a.header = fields.header.value.trim()
                                             || 'X-API-Key';
                              } else {
                                  a.token = fields.token.value.trim();
                              }
                              signIn(a, err, form);
                          }},
                 h('p', {text: 'Sign in with the admin API\'s security '
                         + 'definition (zmq_security of the zmq_admin '
                         + 'location).'}),
                 row('signin-method', 'Method', method),
                 groups.basic, groups.apikey, groups.bearer, err,
                 h('div', {class: 'buttons'},
                   h('button', {type: 'submit', id: 'signin-submit'},
                     'Sign in')));
        m.appendChild(form);
        show();
        fields.username.focus();
    }

    function signIn(a, err, form) {
        err.hidden = true;
        form.setAttribute('aria-busy', 'true');
        api('GET', 'openapi.json', {}, a).then(function (res) {
            form.removeAttribute('aria-busy');
            if (res.status === 401) {
                err.textContent = 'Sign-in refused: wrong credentials.';
                err.hidden = false;
                return;
            }
            if (!res.ok) {
                err.textContent = 'Sign-in failed: ' + errText(res)
                    + (res.retryAfter ? ' Retry after ' + res.retryAfter
                       + ' s.' : '');
                err.hidden = false;
                return;
            }
            S.auth = a;
            S.doc = res.data;
            S.role = 'admin';
            /* the role the credentials have (admin or viewer) */
            return api('GET', 'whoami', {})
                .then(function (p) {
                    S.role = p.ok && p.data && p.data.role === 'viewer'
                             ? 'viewer' : 'admin';
                    saveSession();
                    renderHeader();
                    document.body.classList.toggle('viewer', isViewer());
                    var want = window.location.hash;
                    if (!want || want === '#/signin' || want === '#/') {
                        window.location.hash = '#/status';
                    } else {
                        route();
                    }
                });
        }).catch(function () {});
    }

    function ensureDoc() {
        if (S.doc) {
            return Promise.resolve(S.doc);
        }
        return api('GET', 'openapi.json').then(function (res) {
            if (!res.ok) {
                throw {message: errText(res)};
            }
            S.doc = res.data;
            return S.doc;
        });
    }

    /* a <datalist> of a kind's names (for reference fields) */
    function datalist(kind) {
        var id = 'names-' + kind, dl = document.getElementById(id);
        if (!KINDS[kind]) {
            return null;
        }
        if (!dl) {
            dl = h('datalist', {id: id});
            document.body.appendChild(dl);
        }
        api('GET', kind, {query: {page_size: 1000}}).then(function (res) {
            if (!res.ok) {
                return;
            }
            dl.textContent = '';
            res.data.data.forEach(function (o) {
                dl.appendChild(h('option', {value: o.name}));
            });
        }).catch(function () {});
        return id;
    }

    /* ---------------------------------------------------------- lists */

    function columns(kind) {
        var v = ZF.variants(S.doc, kind), s, cols = [], k, p, w;
        if (v) {
            cols.push(v.field);
            s = v.variants[v.order[0]];
        } else {
            s = ZF.resolve(S.doc, S.doc.components.schemas[kind]);
        }
        for (k in s.properties) {
            if (k === 'name' || k === 'is_active' || cols.length >= 3) {
                continue;
            }
            p = ZF.resolve(S.doc, s.properties[k]);
            w = ZF.widget(p);
            if (['text', 'number', 'enum', 'bool'].indexOf(w) >= 0) {
                cols.push(k);
            }
        }
        return cols;
    }

    function cell(v) {
        if (v === undefined || v === null) {
            return '';
        }
        if (typeof v === 'object') {
            return JSON.stringify(v);
        }
        return String(v);
    }

    function listPage(kind, q) {
        var K = KINDS[kind], m = page(K.title), cols = columns(kind),
            search, size, tbody, pager, status;

        var tools = h('div', {class: 'toolbar'});
        if (!isViewer()) {
            tools.appendChild(h('a', {class: 'button', id: 'create',
                                      href: '#/' + kind + '/new'},
                                'Create'));
        }
        search = h('input', {id: 'q', type: 'search', name: 'q',
                             value: q.q || ''});
        size = h('select', {id: 'page-size', name: 'page_size'},
                 [10, 20, 50, 100].map(function (n) {
                     return h('option', {value: String(n), text: String(n)});
                 }));
        size.value = q.page_size || '20';
        tools.appendChild(h('form', {class: 'search', role: 'search',
                                     onsubmit: function (ev) {
                                         ev.preventDefault();
                                         go(kind, {q: search.value,
                                                   page_size: size.value});
                                     }},
                            h('label', {for: 'q', text: 'Search names'}),
                            search,
                            h('label', {for: 'page-size',
                                        text: 'Per page'}), size,
                            h('button', {type: 'submit', id: 'search'},
                              'Search')));
        m.appendChild(tools);

        status = h('p', {class: 'sub', role: 'status'});
        m.appendChild(status);
        var table = h('table', {class: 'list', id: 'list'},
                      h('caption', {class: 'sr-only', text: K.title}),
                      h('thead', {}, h('tr', {},
                        h('th', {scope: 'col', text: 'Name'}),
                        cols.map(function (c) {
                            return h('th', {scope: 'col',
                                            text: c.replace(/_/g, ' ')});
                        }),
                        h('th', {scope: 'col', text: 'Active'}),
                        h('th', {scope: 'col', text: 'Actions'}))));
        tbody = h('tbody');
        table.appendChild(tbody);
        m.appendChild(h('div', {class: 'table-wrap'}, table));
        pager = h('nav', {class: 'pager', 'aria-label': 'pages'});
        m.appendChild(pager);
        m.appendChild(h('div', {id: 'result', class: 'result',
                                'aria-live': 'polite'}));

        function go(k, qq) {
            var sp = new URLSearchParams();
            Object.keys(qq).forEach(function (x) {
                if (qq[x]) {
                    sp.set(x, qq[x]);
                }
            });
            var s = sp.toString();
            window.location.hash = '#/' + k + (s ? '?' + s : '');
        }

        api('GET', kind, {query: {q: q.q, page: q.page || 1,
                                  page_size: q.page_size || 20}})
        .then(function (res) {
            if (!res.ok) {
                status.textContent = errText(res);
                status.className = 'error';
                return;
            }
            var pg = res.data.page;
            status.textContent = pg.count + ' object' + (pg.count === 1
                ? '' : 's') + (q.q ? ' matching "' + q.q + '"' : '')
                + ' · configuration version ' + res.data.version;
            if (!res.data.data.length) {
                tbody.appendChild(h('tr', {}, h('td', {colspan:
                    String(cols.length + 3), text: 'None.'})));
            }
            res.data.data.forEach(function (o) {
                tbody.appendChild(row(kind, o, cols));
            });
            if (pg.num_pages > 1) {
                var qq = Object.assign({}, q);
                if (pg.number > 1) {
                    pager.appendChild(h('a', {class: 'button secondary',
                        href: '#/' + kind + '?' + new URLSearchParams(
                            Object.assign(qq, {page: pg.number - 1}))
                            .toString(), rel: 'prev'}, 'Previous'));
                }
                pager.appendChild(h('span', {text: ' Page ' + pg.number
                                             + ' of ' + pg.num_pages
                                             + ' '}));
                if (pg.number < pg.num_pages) {
                    pager.appendChild(h('a', {class: 'button secondary',
                        href: '#/' + kind + '?' + new URLSearchParams(
                            Object.assign(qq, {page: pg.number + 1}))
                            .toString(), rel: 'next'}, 'Next'));
                }
            }
        }).catch(function () {});
    }

    function row(kind, o, cols) {
        var tr = h('tr', {'data-name': o.name}),
            acts = h('td', {class: 'actions', 'data-label': 'Actions'});
        tr.appendChild(h('th', {scope: 'row', 'data-label': 'Name'},
                         h('a', {href: '#/' + kind + '/edit/'
                                 + encodeURIComponent(o.name),
                                 text: o.name})));
        cols.forEach(function (c) {
            tr.appendChild(h('td', {'data-label': c.replace(/_/g, ' '),
                                    text: cell(o[c])}));
        });
        tr.appendChild(h('td', {'data-label': 'Active',
                                text: o.is_active === false ? 'no'
                                                            : 'yes'}));
        actions(kind, o, acts, function () { route(); });
        tr.appendChild(acts);
        return tr;
    }

    /* the operations of one object, as buttons in el */
    function actions(kind, o, el, after) {
        var n = o.name;
        function btn(text, cls, fn) {
            el.appendChild(h('button', {type: 'button',
                                        class: 'small ' + cls,
                                        'aria-label': text + ' ' + n,
                                        onclick: fn}, text));
        }
        if (isViewer()) {
            if (el.tagName === 'TD') {
                el.appendChild(h('a', {href: '#/' + kind + '/edit/'
                                       + encodeURIComponent(n),
                                       class: 'small',
                                       text: 'View'}));
            }
            return;
        }
        if (hasPath(kind + '/{name}/ping')) {
            btn('Ping', 'ping', function () { ping(kind, n); });
        }
        if (hasPath(kind + '/{name}/password')
            && ZF.secretField(S.doc, kind, o)
            && !(kind === 'security' && o.type === 'apikey'
                 && (o.direction || 'in') === 'in'))
        {
            btn('Change password', 'passwd', function () {
                password(kind, n);
            });
        }
        if (hasPath(kind + '/{name}/send')) {
            el.appendChild(h('a', {class: 'button small send',
                                   href: '#/' + kind + '/send/'
                                         + encodeURIComponent(n),
                                   'aria-label': 'Send a message through '
                                                 + n},
                             'Send a message'));
        }
        if (kind === 'security' && o.type === 'apikey'
            && (o.direction || 'in') === 'in' && el.tagName === 'TD')
        {
            el.appendChild(h('a', {class: 'button small keys',
                                   href: '#/security/edit/'
                                         + encodeURIComponent(n)
                                         + '?keys=1'}, 'API keys'));
        }
        btn('Delete', 'danger delete', function () {
            remove(kind, n, false, after);
        });
    }

    function result(text, cls) {
        var r = $('#result');
        if (!r) {
            flash(text, cls);
            return;
        }
        r.textContent = '';
        r.className = 'result ' + (cls || '');
        r.appendChild(h('p', {text: text}));
    }

    function ping(kind, n) {
        result('Pinging ' + n + '...');
        api('POST', kindPath(kind, n, 'ping')).then(function (res) {
            var d = res.data || {};
            var at = d.address ? ' at ' + d.address : '';
            if (res.ok && d.ok) {
                result('Ping ' + n + ': OK in '
                       + (Math.round(d.ms * 10) / 10) + ' ms' + at
                       + (d.server ? ' (' + [d.server.product,
                                             d.server.version]
                                            .filter(Boolean).join(' ')
                                     + ')' : '')
                       + (d.tls ? ', ' + d.tls + (d.verified
                          ? ', certificate verified' : ', not verified')
                          : ''), 'ok');
            } else if (res.ok) {
                result('Ping ' + n + ' failed' + at + ': ' + d.error,
                       'error');
            } else {
                result('Ping ' + n + ' failed: ' + errText(res), 'error');
            }
        }).catch(function () {});
    }

    /*
     * A write to the object whose edit form is shown (a password, an API
     * key): sent with the form's If-Match, so that the form takes the
     * answer's ETag (the user's own write is no conflict for a later Save);
     * when someone else changed the object since the form was filled
     * (412), sent again without it, and the form keeps its ETag, so that
     * Save still reports their change. -> [res, the form or null]
     */
    function objectWrite(kind, n, method, path, opt) {
        var F = S.form, tag;
        if (!F || F.kind !== kind || F.name !== n
            || !document.body.contains(F.el))
        {
            F = null;
        }
        tag = F && F.el.getAttribute('data-etag');
        if (!tag) {
            return api(method, path, opt).then(function (res) {
                return [res, F];
            });
        }
        return api(method, path, Object.assign({}, opt, {headers:
                   {'If-Match': tag}}))
        .then(function (res) {
            if (res.status === 412) {
                return api(method, path, opt).then(function (r2) {
                    return [r2, F];
                });
            }
            if (res.ok && res.etag) {
                F.el.setAttribute('data-etag', res.etag);
            }
            return [res, F];
        });
    }

    function password(kind, n) {
        var p1 = h('input', {id: 'pw1', type: 'password', autocomplete:
                             'new-password'}),
            p2 = h('input', {id: 'pw2', type: 'password', autocomplete:
                             'new-password'}),
            err = h('p', {class: 'error', role: 'alert', hidden: true,
                          id: 'pw-error'});
        modal('Change the password of ' + kind + ' \'' + n + '\'', [
            h('div', {class: 'field'}, h('label', {for: 'pw1'},
                                         'New password'), p1),
            h('div', {class: 'field'}, h('label', {for: 'pw2'},
                                         'Repeat the new password'), p2),
            err
        ], [{text: 'Change password', id: 'pw-submit', submit: true,
             onclick: function (d) {
                 err.hidden = true;
                 if (p1.value === '' || p1.value !== p2.value) {
                     err.textContent = p1.value === ''
                         ? 'The password cannot be empty.'
                         : 'The two passwords differ.';
                     err.hidden = false;
                     p2.focus();
                     return;
                 }
                 objectWrite(kind, n, 'POST', kindPath(kind, n, 'password'),
                     {body: {password1: p1.value, password2: p2.value}})
                 .then(function (rf) {
                     var res = rf[0];
                     if (!res.ok) {
                         err.textContent = errText(res);
                         err.hidden = false;
                         return;
                     }
                     d.close();
                     result('The password of ' + n + ' was changed '
                            + '(version ' + res.data.version + ').', 'ok');
                 }).catch(function () {});
             }}]);
        p1.focus();
    }

    function remove(kind, n, cascade, after) {
        var body = h('div', {}, h('p', {text: 'Delete ' + kind + ' \'' + n
                                        + '\'? This cannot be undone.'})),
            buttons = [{text: cascade ? 'Delete all of them' : 'Delete',
                        cls: 'danger', id: 'confirm-delete', submit: true,
                        onclick: function (d) {
                            doRemove(kind, n, cascade, d, body, after);
                        }}];
        if (cascade) {
            body.appendChild(cascade);
        }
        modal('Delete', body, buttons);
    }

    function doRemove(kind, n, cascade, d, body, after) {
        var F = S.form, hd = {};
        /* from the object's own page: only the version it shows (someone
         * else's change since is not deleted unseen: 412) */
        if (F && F.kind === kind && F.name === n
            && document.body.contains(F.el) && F.el.getAttribute('data-etag'))
        {
            hd['If-Match'] = F.el.getAttribute('data-etag');
        }
        api('DELETE', kindPath(kind, n), {query: cascade ? {cascade: 'true'}
                                                          : {},
                                          headers: hd})
        .then(function (res) {
            if (res.status === 412) {
                body.appendChild(h('p', {class: 'error', role: 'alert',
                                         id: 'delete-conflict',
                    text: 'Not deleted: someone else changed ' + kind + ' \''
                          + n + '\' since you opened it. Reload the page to '
                          + 'see it, then delete it if you still want to.'}));
                return;
            }
            if (res.status === 409 && res.data.error === 'in_use') {
                d.close();
                var list = h('ul', {id: 'referrers'},
                             res.data.referrers.map(function (r) {
                                 return h('li', {text: r.kind + ' \''
                                                 + r.name + '\''});
                             }));
                remove(kind, n, h('div', {},
                    h('p', {class: 'error', text: n + ' is used by:'}),
                    list,
                    h('p', {text: 'Delete them too (cascade, and '
                            + 'whatever refers to them)?'})), after);
                return;
            }
            if (!res.ok) {
                body.appendChild(h('p', {class: 'error', role: 'alert',
                                         text: errText(res)}));
                return;
            }
            d.close();
            var names = (res.data.deleted || []).map(function (x) {
                return x.kind + ' \'' + x.name + '\'';
            });
            S.pending = ['Deleted ' + names.join(', ') + ' (version '
                         + res.data.version + ').', 'ok'];
            if (after) {
                after();
            }
        }).catch(function () {});
    }

    /* ---------------------------------------------------------- edit */

    function editPage(kind, name, q) {
        var K = KINDS[kind], creating = name === undefined,
            m = page((creating ? 'New: ' : '') + K.title.replace(/s$/, '')
                     + (creating ? '' : ' \'' + name + '\''));
        var box = h('div', {id: 'form-box'});
        m.appendChild(box);

        if (creating) {
            form(kind, {}, null, box);
            return;
        }
        api('GET', kindPath(kind, name)).then(function (res) {
            if (!res.ok) {
                box.appendChild(h('p', {class: 'error', text: errText(res)}));
                return;
            }
            form(kind, res.data, res.etag, box, q.keys === '1');
        }).catch(function () {});
    }

    function form(kind, obj, etag, box, focusKeys) {
        var creating = etag === null, ro = isViewer(), f, el, summary,
            save, acts, conflict;

        f = ZF.build(S.doc, kind, obj, {editing: !creating, datalist:
                                         datalist});
        summary = h('div', {id: 'form-errors', class: 'errors',
                            role: 'alert', tabindex: '-1', hidden: true});
        conflict = h('div', {id: 'conflict', class: 'conflict',
                             role: 'alert', hidden: true});
        save = h('button', {type: 'submit', id: 'save'},
                 creating ? 'Create' : 'Save');
        el = h('form', {id: 'object-form', class: 'card', novalidate: true,
                        'data-kind': kind, 'data-etag': etag || '',
                        onsubmit: function (ev) {
                            ev.preventDefault();
                            submit(false);
                        }},
               conflict, summary,
               h('fieldset', {class: 'plain', disabled: ro},
                 h('legend', {class: 'sr-only', text: kind}), f.el),
               ro ? h('p', {class: 'hint', id: 'readonly-note',
                            text: 'Read-only: your role is viewer.'})
                  : h('div', {class: 'buttons'}, save,
                      h('a', {href: '#/' + kind, class: 'button secondary'},
                        'Cancel')));
        box.textContent = '';
        box.appendChild(el);
        S.form = creating ? null : {kind: kind, name: obj.name, f: f, el: el};
        if (!creating) {
            acts = h('div', {class: 'toolbar actions', id: 'object-actions'});
            actions(kind, obj, acts, function () {
                window.location.hash = '#/' + kind;
            });
            box.appendChild(acts);
            box.appendChild(h('div', {id: 'result', class: 'result',
                                      'aria-live': 'polite'}));
            /* after a Save too: the rebuilt form keeps its keys section */
            if (kind === 'security' && obj.type === 'apikey'
                && (obj.direction || 'in') === 'in')
            {
                keys(obj.name, obj, etag, focusKeys);
            }
        }

        function showErrors(list, message) {
            var rest = f.showErrors(list);
            summary.textContent = '';
            summary.appendChild(h('p', {text: message}));
            if (list.length) {
                summary.appendChild(h('ul', {}, list.map(function (e) {
                    return h('li', {}, (e.field ? e.field + ': ' : '')
                             + e.message);
                })));
            }
            summary.hidden = false;
            if (rest.length === list.length) {
                summary.focus();
            }
        }

        function submit(overwrite) {
            var body;
            f.clearErrors();
            summary.hidden = true;
            conflict.hidden = true;
            try {
                body = f.collect();
            } catch (errs) {
                showErrors(errs, 'Fix the fields marked below.');
                return;
            }
            var hd = {};
            if (!creating) {
                hd['If-Match'] = overwrite || el.getAttribute('data-etag');
            }
            save.disabled = true;
            var req = creating
                ? api('POST', kind, {body: body, query: {wait: '1'}})
                : api('PUT', kindPath(kind, obj.name), {body: body,
                      headers: hd, query: {wait: '1'}});
            req.then(function (res) {
                save.disabled = false;
                var d = res.data || {};
                if (res.ok) {
                    var msg = (creating ? 'Created ' : 'Saved ') + kind
                        + ' \'' + d.data.name + '\' (version ' + d.version
                        + (d.changes === 0 ? ', nothing changed' : '')
                        + ').';
                    if (creating) {
                        S.pending = [msg, 'ok'];
                        window.location.hash = '#/' + kind + '/edit/'
                            + encodeURIComponent(d.data.name);
                    } else {
                        form(kind, d.data, res.etag, box);
                        flash(msg, 'ok');
                    }
                    return;
                }
                if (res.status === 400 && d.error === 'invalid') {
                    showErrors(d.errors || [], d.message);
                    return;
                }
                if (res.status === 412) {
                    var had = el.getAttribute('data-etag'),
                        now = d.etag ? (/^"/.test(d.etag) ? d.etag
                                        : '"' + d.etag + '"') : null;
                    conflict.textContent = '';
                    conflict.appendChild(h('p', {},
                        h('strong', {text: 'Not saved: someone else '
                                     + 'changed this object.'}),
                        ' ' + kind + ' \'' + obj.name + '\' was changed '
                        + 'since you opened it (you edited version '
                        + had.replace(/"/g, '') + ', the store has '
                        + (now ? 'version ' + now.replace(/"/g, '')
                           : 'none: it was deleted') + '). Reload to see '
                        + 'the current object, or save yours over it.'));
                    conflict.appendChild(h('div', {class: 'buttons'},
                        h('button', {type: 'button', id: 'reload',
                                     onclick: function () {
                                         editPage(kind, obj.name, {});
                                     }}, 'Reload (discard my changes)'),
                        now ? h('button', {type: 'button',
                                           class: 'danger',
                                           id: 'overwrite',
                                           onclick: function () {
                                               el.setAttribute('data-etag',
                                                               now);
                                               submit(now);
                                           }}, 'Save mine over theirs')
                            : null));
                    conflict.hidden = false;
                    conflict.scrollIntoView();
                    $('#reload').focus();
                    return;
                }
                showErrors([], errText(res));
            }).catch(function () { save.disabled = false; });
        }
    }

    /* an incoming apikey definition's keys: list, create, revoke */
    function keys(name, obj, etag, focus) {
        var sec = h('section', {id: 'keys', class: 'card',
                                'aria-labelledby': 'keys-title'}),
            list = h('ul', {id: 'key-list'}), idIn, shown,
            cur = (obj.keys || []).map(function (k) { return {id: k.id}; });

        /* the form on the page sends the keys as they now are */
        function update(F) {
            if (F) {
                F.f.set('keys', cur.slice());
            }
        }

        function item(k, isNew) {
            var li = h('li', {'data-id': k.id}, h('code', {text: k.id}),
                       isNew ? ' (new) ' : null);
            if (!isViewer()) {
                li.appendChild(revokeButton(k, li));
            }
            return li;
        }

        sec.appendChild(h('h2', {id: 'keys-title', text: 'API keys'}));
        function revokeButton(k, li) {
            return h('button', {
                type: 'button', class: 'small danger revoke',
                'aria-label': 'Revoke key ' + k.id,
                onclick: function () {
                    modal('Revoke key', h('p', {text: 'Revoke API key \''
                          + k.id + '\' of ' + name + '? Clients using '
                          + 'it are refused from then on.'}),
                          [{text: 'Revoke', cls: 'danger', submit: true,
                            id: 'confirm-revoke',
                            onclick: function (d) {
                                objectWrite('security', name, 'DELETE',
                                    'security/' + encodeURIComponent(name)
                                    + '/keys/' + encodeURIComponent(k.id),
                                    {})
                                .then(function (rf) {
                                    var res = rf[0];
                                    d.close();
                                    if (!res.ok) {
                                        flash(errText(res), 'error');
                                        return;
                                    }
                                    /* the form keeps what was typed in it */
                                    li.remove();
                                    cur = cur.filter(function (x) {
                                        return x.id !== k.id;
                                    });
                                    update(rf[1]);
                                    flash('Key ' + k.id + ' revoked.', 'ok');
                                }).catch(function () {});
                            }}]);
                }}, 'Revoke');
        }

        cur.forEach(function (k) {
            list.appendChild(item(k, false));
        });
        if (!(obj.keys || []).length) {
            list.appendChild(h('li', {text: 'No keys yet.'}));
        }
        sec.appendChild(list);
        shown = h('div', {id: 'new-key', role: 'status'});
        if (!isViewer()) {
            idIn = h('input', {id: 'key-id', name: 'id'});
            sec.appendChild(h('form', {class: 'inline', novalidate: true,
                onsubmit: function (ev) {
                    ev.preventDefault();
                    var body = idIn.value.trim() ? {id: idIn.value.trim()}
                                                 : {};
                    objectWrite('security', name, 'POST', 'security/'
                        + encodeURIComponent(name) + '/keys', {body: body})
                    .then(function (rf) {
                        var res = rf[0];
                        shown.textContent = '';
                        if (!res.ok) {
                            shown.appendChild(h('p', {class: 'error',
                                                      text: errText(res)}));
                            return;
                        }
                        var out = h('input', {id: 'key-value', readOnly: true,
                                              class: 'mono',
                                              value: res.data.key});
                        shown.appendChild(h('div', {class: 'once'},
                            h('p', {}, h('strong', {text: 'Key '
                              + res.data.id + ' created.'}),
                              ' Copy it now: it is shown only this once.'),
                            h('label', {for: 'key-value', text: 'New key'}),
                            out,
                            h('button', {type: 'button', onclick: function () {
                                out.select();
                                if (navigator.clipboard) {
                                    navigator.clipboard.writeText(out.value)
                                        .catch(function () {});
                                }
                            }}, 'Copy')));
                        out.select();
                        cur.push({id: res.data.id});
                        update(rf[1]);
                        list.appendChild(item({id: res.data.id}, true));
                    }).catch(function () {});
                }},
                h('label', {for: 'key-id', text: 'Key id (optional)'}),
                idIn, h('button', {type: 'submit', id: 'create-key'},
                        'Create key')));
        }
        sec.appendChild(shown);
        $('#form-box').appendChild(sec);
        if (focus) {
            sec.scrollIntoView();
        }
    }

    /* ---------------------------------------------------------- send */

    function sendPage(name, kind) {
        var stomp = kind === 'stomp_outconn';
        var m = page('Send a message', 'through the outgoing '
                     + (stomp ? 'STOMP' : 'AMQP') + ' connection \''
                     + name + '\'; answered once the broker '
                     + (stomp ? 'sent its receipt' : 'confirmed it')),
            F = {}, err, out;

        function fld(key, text, input, hint) {
            input.id = 'send-' + key;
            input.name = key;
            F[key] = input;
            return h('div', {class: 'field', 'data-path': key},
                     h('label', {for: input.id, text: text}), input,
                     hint ? h('p', {class: 'hint', text: hint}) : null);
        }
        var dm = h('select', {}, h('option', {value: '', text:
                    '(the connection\'s default)'}),
                   h('option', {value: '1', text: '1: transient'}),
                   h('option', {value: '2', text: '2: persistent'}));
        err = h('div', {id: 'send-errors', class: 'errors', role: 'alert',
                        hidden: true});
        out = h('div', {id: 'send-result', class: 'result',
                        'aria-live': 'polite'});
        var form = h('form', {id: 'send-form', class: 'card', novalidate: true,
                              onsubmit: function (ev) {
                                  ev.preventDefault();
                                  send(name, F, err, out, kind);
                              }},
            err,
            h('div', {class: 'cols'},
              stomp ? fld('destination', 'Destination', h('input', {}),
                          'e.g. /queue/orders')
                    : fld('exchange', 'Exchange', h('input', {}),
                          'empty: the default exchange'),
              stomp ? null : fld('routing_key', 'Routing key',
                                 h('input', {})),
              fld('delivery_mode', 'Delivery mode', dm),
              fld('priority', 'Priority', h('input', {inputmode: 'numeric'}),
                  '0-9'),
              fld('expiration', 'Expiration', h('input',
                  {inputmode: 'numeric'}), 'milliseconds'),
              fld('correlation_id', 'Correlation id', h('input', {})),
              fld('reply_to', 'Reply to', h('input', {})),
              fld('message_id', 'Message id', h('input', {}),
                  'empty: a new UUID'),
              fld('content_type', 'Content type', h('input', {})),
              stomp ? fld('type', 'Type', h('input', {}),
                          'JMSType for a JMS consumer') : null),
            fld('headers', 'Headers', h('textarea', {rows: 3,
                class: 'mono', placeholder: '{"tenant": "acme"}'}),
                'JSON object: string, integer or boolean values'),
            fld('body', 'Body', h('textarea', {rows: 6, class: 'mono'})),
            stomp ? null : h('div', {class: 'check'},
              F.mandatory = h('input', {type: 'checkbox',
                                        id: 'send-mandatory'}),
              h('label', {for: 'send-mandatory',
                          text: 'Mandatory (unroutable is an error)'})),
            h('div', {class: 'buttons'},
              h('button', {type: 'submit', id: 'send'}, 'Send'),
              h('a', {href: '#/' + kind, class: 'button secondary'},
                'Back')));
        if (isViewer()) {
            form.querySelector('#send').disabled = true;
            form.appendChild(h('p', {class: 'hint',
                text: 'Read-only: your role is viewer.'}));
        }
        m.appendChild(form);
        m.appendChild(out);
        (stomp ? F.destination : F.exchange).focus();
    }

    function send(name, F, err, out, kind) {
        var stomp = kind === 'stomp_outconn';
        var doc = stomp ? {destination: F.destination.value,
                           body: F.body.value}
                        : {exchange: F.exchange.value,
                           routing_key: F.routing_key.value,
                           body: F.body.value},
            props = {}, k;
        err.hidden = true;
        err.textContent = '';
        if (F.delivery_mode.value) {
            props.delivery_mode = Number(F.delivery_mode.value);
        }
        if (F.priority.value.trim() !== '') {
            props.priority = ZF.jsonNumber(F.priority.value.trim()) === null
                             ? F.priority.value
                             : ZF.jsonNumber(F.priority.value.trim());
        }
        ['expiration', 'correlation_id', 'reply_to', 'message_id',
         'content_type', 'type'].forEach(function (p) {
            if (F[p] && F[p].value.trim() !== '') {
                props[p] = F[p].value.trim();
            }
        });
        for (k in props) {
            doc.properties = props;
            break;
        }
        if (F.headers.value.trim() !== '') {
            try {
                doc.headers = JSON.parse(F.headers.value);
            } catch (e) {
                err.textContent = 'headers: not valid JSON (' + e.message
                                  + ')';
                err.hidden = false;
                F.headers.focus();
                return;
            }
        }
        if (F.mandatory && F.mandatory.checked) {
            doc.mandatory = true;
        }
        out.textContent = 'Sending...';
        api('POST', kindPath(kind, name, 'send'), {body: doc})
        .then(function (res) {
            out.textContent = '';
            var d = res.data || {};
            if (res.ok) {
                out.className = 'result ok';
                out.appendChild(h('p', {},
                    h('strong', {text: d.confirmed ? 'Confirmed'
                                                   : 'Sent, not confirmed'}),
                    ' by the broker. Message id ',
                    h('code', {id: 'sent-id', text: d.message_id})));
            } else {
                out.className = 'result error';
                out.appendChild(h('p', {id: 'send-error', text:
                    'Not sent: ' + errText(res)}));
            }
        }).catch(function () {});
    }

    /* -------------------------------------------------- import/export */

    function importPage() {
        var m = page('Import / export', 'the whole configuration, as '
                     + 'zmqctl import and export read and write it'),
            file, replace, out, apply;

        m.appendChild(h('section', {class: 'card'},
            h('h2', {text: 'Export'}),
            h('p', {text: 'Downloads the configuration as JSON (secrets '
                    + 'left out; API keys as their digests).'}),
            h('button', {type: 'button', id: 'export', onclick: doExport},
              'Download export')));

        file = h('input', {type: 'file', id: 'import-file',
                           accept: 'application/json,.json'});
        replace = h('input', {type: 'checkbox', id: 'import-replace'});
        out = h('div', {id: 'import-result', class: 'result',
                        'aria-live': 'polite'});
        apply = h('button', {type: 'button', id: 'import-apply',
                             hidden: true}, 'Import');
        var sec = h('section', {class: 'card'},
            h('h2', {text: 'Import'}),
            h('p', {text: 'The file is checked first; nothing changes '
                    + 'unless every object is valid.'}),
            h('div', {class: 'field'}, h('label', {for: 'import-file',
                                                   text: 'JSON file'}), file),
            h('div', {class: 'check'}, replace,
              h('label', {for: 'import-replace', text: 'Replace: delete '
                          + 'what the file does not have'})),
            h('div', {class: 'buttons'},
              h('button', {type: 'button', id: 'import-check',
                           onclick: function () { doImport(true); }},
                'Check'), apply),
            out);
        if (isViewer()) {
            sec.querySelectorAll('button').forEach(function (b) {
                b.disabled = true;
            });
            sec.appendChild(h('p', {class: 'hint',
                text: 'Read-only: your role is viewer.'}));
        }
        m.appendChild(sec);
        apply.addEventListener('click', function () { doImport(false); });

        function doImport(check) {
            out.textContent = '';
            out.className = 'result';
            if (!file.files.length) {
                out.appendChild(h('p', {class: 'error', text:
                    'Choose a file first.'}));
                return;
            }
            file.files[0].text().then(function (text) {
                var q = {};
                if (check) {
                    q.check = '1';
                }
                if (replace.checked) {
                    q.replace = '1';
                }
                return api('POST', 'import', {query: q, body: text});
            }).then(function (res) {
                var d = res.data || {};
                if (!res.ok) {
                    apply.hidden = true;
                    out.className = 'result error';
                    out.appendChild(h('p', {id: 'import-error',
                                            text: (check ? 'Check' : 'Import')
                                            + ' refused, nothing changed: '
                                            + errText(res)}));
                    if (d.errors) {
                        out.appendChild(h('ul', {id: 'import-errors'},
                            d.errors.map(function (e) {
                                return h('li', {text: [e.kind, e.name &&
                                    '\'' + e.name + '\'', e.field]
                                    .filter(Boolean).join(' ')
                                    + ': ' + e.message});
                            })));
                    }
                    return;
                }
                out.className = 'result ok';
                if (check) {
                    out.appendChild(h('p', {id: 'import-checked',
                        text: 'Valid: ' + d.objects + ' objects, '
                              + d.changes + ' change' + (d.changes === 1
                              ? '' : 's') + ' to apply.'}));
                    apply.hidden = false;
                    apply.focus();
                } else {
                    apply.hidden = true;
                    out.appendChild(h('p', {id: 'import-done',
                        text: 'Imported: ' + d.objects + ' objects, '
                              + d.changes + ' change' + (d.changes === 1
                              ? '' : 's') + ' (version ' + d.version
                              + ').'}));
                }
            }).catch(function () {});
        }
    }

    function doExport() {
        api('GET', 'export').then(function (res) {
            if (!res.ok) {
                flash('Export failed: ' + errText(res), 'error');
                return;
            }
            var blob = new Blob([JSON.stringify(res.data, null, 2) + '\n'],
                                {type: 'application/json'}),
                a = h('a', {href: URL.createObjectURL(blob),
                            download: 'ngx_zmq-export-'
                            + new Date().toISOString().slice(0, 19)
                              .replace(/[:T]/g, '-') + '.json'});
            document.body.appendChild(a);
            a.click();
            a.remove();
            flash('Exported.', 'ok');
        }).catch(function () {});
    }

    /* --------------------------------------------------------- status */

    function stopTimer() {
        if (S.timer) {
            clearInterval(S.timer);
            S.timer = null;
        }
    }

    function time(t) {
        return t ? new Date(t * 1000).toLocaleString() : '';
    }

    var COUNTERS = ['inflight', 'published', 'confirmed', 'nacked',
                    'returned', 'timed_out', 'lost', 'rejected',
                    'reconnects'];

    function statusPage() {
        var m = page('Status'), box = h('div', {id: 'status'}),
            auto = h('input', {type: 'checkbox', id: 'auto', checked: true}),
            stamp = h('span', {id: 'updated', class: 'sub'});

        m.appendChild(h('div', {class: 'toolbar'},
            h('div', {class: 'check'}, auto,
              h('label', {for: 'auto', text: 'Refresh every 3 s'})),
            h('button', {type: 'button', class: 'secondary',
                         onclick: load}, 'Refresh now'), stamp));
        m.appendChild(box);

        function load() {
            api('GET', 'status').then(function (res) {
                if (!res.ok) {
                    box.textContent = '';
                    box.appendChild(h('p', {class: 'error',
                                            text: errText(res)}));
                    return;
                }
                render(res.data);
                stamp.textContent = 'updated '
                                    + new Date().toLocaleTimeString();
            }).catch(function () {});
        }

        function render(st) {
            var c = st.config, objs = [];
            box.textContent = '';
            box.appendChild(h('section', {class: 'card', id: 'config'},
                h('h2', {text: 'Configuration'}),
                h('dl', {class: 'kv'},
                  h('dt', {text: 'module'}),
                  h('dd', {text: st.module + ' ' + st.version + ' (pid '
                           + st.pid + ' answered)'}),
                  c ? [h('dt', {text: 'source'}),
                       h('dd', {text: c.source}),
                       c.state ? h('dt', {text: 'state'}) : null,
                       c.state ? h('dd', {text: c.state}) : null,
                       c.version !== undefined ? h('dt', {text: 'version'})
                                               : null,
                       c.version !== undefined ? h('dd', {text:
                           String(c.version)}) : null,
                       c.loaded_at ? h('dt', {text: 'loaded'}) : null,
                       c.loaded_at ? h('dd', {text: time(c.loaded_at)})
                                   : null]
                    : [h('dt', {text: 'source'}),
                       h('dd', {text: 'none (no zmq_config)'})])));
            if (c && c.objects) {
                Object.keys(c.objects).forEach(function (k) {
                    objs.push(k + ': ' + c.objects[k]);
                });
                box.lastChild.appendChild(h('p', {class: 'sub',
                                                  text: objs.join(' · ')}));
            }
            (st.workers || []).forEach(function (w) {
                var names = Object.keys(w.outconns || {}).sort(),
                    sec = h('section', {class: 'card worker',
                                        'data-worker': String(w.worker)});
                sec.appendChild(h('h2', {text: 'Worker ' + w.worker
                                         + ' (pid ' + w.pid + ')'}));
                sec.appendChild(h('dl', {class: 'kv'},
                    h('dt', {text: 'configuration version'}),
                    h('dd', {class: 'config-version',
                             text: String(w.config_version)}),
                    w.source_state ? [h('dt', {text: 'source'}),
                        h('dd', {}, h('span', {class: 'state source-state '
                                               + 'state-' + w.source_state,
                                               text: w.source_state}),
                          w.since ? ' since ' + time(w.since) : '')]
                        : null,
                    w.store_version !== undefined
                        ? [h('dt', {text: 'store version'}),
                           h('dd', {text: String(w.store_version)})] : null,
                    w.error ? [h('dt', {text: 'error'}),
                               h('dd', {class: 'error', text: w.error})]
                            : null));
                if (!names.length) {
                    sec.appendChild(h('p', {text: 'No outgoing '
                                            + 'connections.'}));
                } else {
                    var t = h('table', {class: 'list stats'},
                        h('caption', {class: 'sr-only', text:
                            'outgoing connections of worker ' + w.worker}),
                        h('thead', {}, h('tr', {},
                          h('th', {scope: 'col', text: 'Connection'}),
                          h('th', {scope: 'col', text: 'State'}),
                          COUNTERS.map(function (k) {
                              return h('th', {scope: 'col',
                                              text: k.replace('_', ' ')});
                          }))),
                        h('tbody', {}, names.map(function (n) {
                            var o = w.outconns[n];
                            return h('tr', {'data-outconn': n},
                                h('th', {scope: 'row', 'data-label':
                                         'Connection', text: n}),
                                h('td', {'data-label': 'State'},
                                  h('span', {class: 'state state-'
                                             + o.state, text: o.state})),
                                COUNTERS.map(function (k) {
                                    return h('td', {'data-label':
                                                    k.replace('_', ' '),
                                                    class: 'num',
                                                    text: String(o[k])});
                                }));
                        })));
                    sec.appendChild(h('div', {class: 'table-wrap'}, t));
                }
                box.appendChild(sec);
            });
        }

        auto.addEventListener('change', function () {
            stopTimer();
            if (auto.checked) {
                S.timer = setInterval(load, 3000);
            }
        });
        load();
        S.timer = setInterval(load, 3000);
    }

    /* -------------------------------------------------------- router */

    function parseHash() {
        var hs = window.location.hash.replace(/^#\/?/, ''), q = {}, i,
            parts;
        i = hs.indexOf('?');
        if (i >= 0) {
            new URLSearchParams(hs.slice(i + 1)).forEach(function (v, k) {
                q[k] = v;
            });
            hs = hs.slice(0, i);
        }
        try {
            parts = hs.split('/').map(function (p) {
                return decodeURIComponent(p);
            });
        } catch (e) {
            /* a malformed %-escape (#/amqp_def/edit/50%): no such page */
            parts = ['\u0000'];
        }
        return {parts: parts, q: q};
    }

    /* an object's name in a page's URL: the model's names only. Anything
     * else (a decoded '/', '?', '#') would make a different API path of
     * kindPath() (NGINX decodes %2F and resolves '..'); '.' and '..' are
     * resolved away by the browser itself */
    function nameOk(n) {
        return /^[A-Za-z0-9._:@-]{1,200}$/.test(n) && n !== '.' && n !== '..';
    }

    function route(ev) {
        var r = parseHash(), p = r.parts, kind = p[0];
        stopTimer();
        if (!S.auth) {
            showSignIn();
            return;
        }
        ensureDoc().then(function () {
            markNav(kind + (p.length === 1 ? '' : '/'));
            if (kind === 'status' || kind === '' || kind === 'signin') {
                markNav('status');
                statusPage();
            } else if (kind === 'import') {
                markNav('import');
                importPage();
            } else if (KINDS[kind] && p.length === 1) {
                markNav(kind);
                listPage(kind, r.q);
            } else if (KINDS[kind] && p[1] === 'new') {
                markNav(kind);
                editPage(kind, undefined, r.q);
            } else if (KINDS[kind] && p[1] === 'edit' && p.length === 3
                       && nameOk(p[2]))
            {
                markNav(kind);
                editPage(kind, p[2], r.q);
            } else if ((kind === 'amqp_outconn' || kind === 'stomp_outconn')
                       && p[1] === 'send' && p.length === 3 && nameOk(p[2]))
            {
                markNav(kind);
                sendPage(p[2], kind);
            } else {
                page('Not found').appendChild(h('p', {text:
                    'No such page.'}));
            }
            var t = $('#page-title');
            /* after a move (not on load), the new page's title has the
             * focus, for screen readers and the keyboard */
            if (t && ev && ev.type === 'hashchange') {
                t.focus();
            }
        }).catch(function (e) {
            if (e && e.handled) {
                return;
            }
            page('Error').appendChild(h('p', {class: 'error',
                text: (e && e.message) || String(e)}));
        });
    }

    document.addEventListener('DOMContentLoaded', function () {
        S.base = apiBase();
        loadSession();
        renderNav();
        renderHeader();
        document.body.classList.toggle('viewer', isViewer());
        window.addEventListener('hashchange', route);
        route();
    });
}());
