/*
 * ngx_zmq web-admin: forms generated from the admin API's OpenAPI schemas.
 *
 * ZF.build(doc, kind, value, opts) returns a form for one object of a kind:
 * every property of the kind's schema becomes a labelled input (enums a
 * select, booleans a checkbox, integers a number, secrets a password
 * input, objects with properties a fieldset, lists of names one per line,
 * other objects and arrays JSON), defaults filled in and shown. A kind
 * whose schema is a oneOf (service, security) gets a select of its
 * discriminator (kind, type) that rebuilds the fields below it.
 */

'use strict';

var ZF = (function () {

    /* h('input', {type: 'text'}, child...): an element, never innerHTML */
    function h(tag, attrs) {
        var el = document.createElement(tag), k, i, c;
        attrs = attrs || {};
        for (k in attrs) {
            if (!Object.prototype.hasOwnProperty.call(attrs, k)
                || attrs[k] === undefined || attrs[k] === null
                || attrs[k] === false)
            {
                continue;
            }
            if (k === 'text') {
                el.textContent = attrs[k];
            } else if (k === 'class') {
                el.className = attrs[k];
            } else if (k.slice(0, 2) === 'on') {
                el.addEventListener(k.slice(2), attrs[k]);
            } else if (k === 'value' || k === 'checked' || k === 'disabled'
                       || k === 'readOnly' || k === 'selected')
            {
                el[k] = attrs[k];
            } else {
                el.setAttribute(k, attrs[k] === true ? '' : attrs[k]);
            }
        }
        for (i = 2; i < arguments.length; i++) {
            c = arguments[i];
            if (c === undefined || c === null || c === false) {
                continue;
            }
            if (Array.isArray(c)) {
                c.forEach(function (x) { if (x) { el.appendChild(x); } });
            } else if (typeof c === 'string' || typeof c === 'number') {
                el.appendChild(document.createTextNode(String(c)));
            } else {
                el.appendChild(c);
            }
        }
        return el;
    }

    var uid = 0;

    function nextId(prefix) {
        uid++;
        return (prefix || 'f') + '-' + uid;
    }

    /* a schema with its $ref and one-element allOf folded in; ref: the name
     * of the component it came from (Name, Secret, Retry, ...) */
    function resolve(doc, s) {
        var name, r, out, k;

        if (!s) {
            return {};
        }
        if (s.$ref) {
            name = s.$ref.split('/').pop();
            r = resolve(doc, doc.components.schemas[name]);
            out = Object.assign({}, r);
            out.ref = out.ref || name;
            for (k in s) {
                if (k !== '$ref') {
                    out[k] = s[k];
                }
            }
            return out;
        }
        if (s.allOf && s.allOf.length === 1) {
            r = resolve(doc, s.allOf[0]);
            out = Object.assign({}, r);
            for (k in s) {
                if (k !== 'allOf') {
                    out[k] = s[k];
                }
            }
            return out;
        }
        return s;
    }

    /* the variants of a oneOf kind: {field: 'kind', variants: {publish:
     * schema, ...}, order: [...]}, or null for a plain kind */
    function variants(doc, kind) {
        var s = doc.components.schemas[kind], out, field = null;

        if (!s || !s.oneOf) {
            return null;
        }
        out = {field: null, variants: {}, order: []};
        s.oneOf.forEach(function (v) {
            var r = resolve(doc, v), k;
            for (k in r.properties || {}) {
                if (r.properties[k].const !== undefined) {
                    field = k;
                    out.variants[r.properties[k].const] = r;
                    out.order.push(r.properties[k].const);
                }
            }
        });
        out.field = field;
        return out;
    }

    /* the object schema for a kind and a value (the variant it names) */
    function schemaFor(doc, kind, value) {
        var v = variants(doc, kind), d;
        if (v === null) {
            return resolve(doc, doc.components.schemas[kind]);
        }
        d = value && value[v.field];
        return v.variants[d] || v.variants[v.order[0]];
    }

    /* the kind a Name field refers to, from its description ("the name of
     * a amqp_outconn (...)", "names of services") */
    function refKind(p) {
        var m = /the name of an? ([a-z_]+)/.exec(p.description || '');
        if (m) {
            return m[1];
        }
        if (/names of services/.test(p.description || '')) {
            return 'service';
        }
        return null;
    }

    function widget(p) {
        if (p.ref === 'Secret') {
            return 'secret';
        }
        if (p.const !== undefined) {
            return 'const';
        }
        if (p.enum) {
            return 'enum';
        }
        if (p.type === 'boolean') {
            return 'bool';
        }
        if (p.type === 'integer' || p.type === 'number') {
            return 'number';
        }
        if (p.type === 'string') {
            return (p.maxLength || 0) > 4096 ? 'textarea' : 'text';
        }
        if (p.type === 'object' && p.properties) {
            return 'group';
        }
        if (p.type === 'array' && p.items
            && (p.items.type === 'string' || p.items.$ref
                === '#/components/schemas/Name'))
        {
            return 'lines';
        }
        if (p.type === 'array' && p.items && p.items.$ref
            === '#/components/schemas/ApiKey')
        {
            return 'keys';
        }
        if (p.type === 'object' || p.type === 'array') {
            return 'json';
        }
        return 'jsonish';
    }

    /* v as a number if it is written as a JSON number, else null */
    function jsonNumber(v) {
        var n;
        if (!/^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/.test(v)) {
            return null;
        }
        n = Number(v);
        return isFinite(n) ? n : null;
    }

    function same(a, b) {
        return JSON.stringify(a) === JSON.stringify(b);
    }

    function label(name) {
        return name.replace(/_/g, ' ');
    }

    /*
     * One field: returns {el, path, collect(), input}. orig: the stored
     * value (undefined on create), present: whether the stored object has
     * the field.
     */
    function field(doc, name, p, path, orig, present, ctx) {
        var w = widget(p), id = nextId('fld'), hintId = id + '-hint',
            errId = id + '-err', input, kids = [], req, hint = [], f,
            list, rk, desc, typed, kept;

        req = ctx.required.indexOf(name) >= 0;
        desc = p.description || p.title;
        if (p.default !== undefined && w !== 'group') {
            hint.push('default: ' + (typeof p.default === 'string'
                                     ? (p.default === '' ? '(empty)'
                                        : p.default)
                                     : JSON.stringify(p.default)));
        }
        if (p.minimum !== undefined && p.maximum !== undefined) {
            hint.push(p.minimum + '-' + p.maximum);
        }
        if (desc) {
            hint.push(desc);
        }

        f = {path: path, name: name, widget: w, schema: p};

        function described(el) {
            el.setAttribute('aria-describedby', hintId + ' ' + errId);
            if (req) {
                el.setAttribute('aria-required', 'true');
            }
            return el;
        }

        var start = present ? orig : p.default;

        switch (w) {
        case 'group':
            return group(doc, name, p, path, orig, present, ctx);

        case 'const':
            return null;

        case 'secret':
            /* a stored secret reads {"$set": true}; a string is what the
             * user typed before a kind/type switch rebuilt the form: kept
             * in the input (never a stored secret: the API returns none) */
            typed = typeof orig === 'string';
            kept = present && !typed;
            input = described(h('input', {
                id: id, type: 'password', name: path,
                autocomplete: 'new-password',
                value: typed ? orig : undefined,
                placeholder: kept ? 'set: leave empty to keep it'
                                  : 'not set'
            }));
            f.collect = function () {
                if (input.value !== '') {
                    return input.value;
                }
                return kept ? {'$set': true} : undefined;
            };
            break;

        case 'enum':
            input = described(h('select', {id: id, name: path}));
            if (!req || p.default === undefined) {
                input.appendChild(h('option', {value: '',
                    text: p.default === undefined ? '(not set)'
                          : '(default)'}));
            }
            p.enum.forEach(function (v) {
                input.appendChild(h('option', {value: String(v),
                                               text: String(v)}));
            });
            input.value = start === undefined ? '' : String(start);
            f.collect = function () {
                var v = input.value, t;
                if (v === '') {
                    return undefined;
                }
                t = p.enum.filter(function (e) { return String(e) === v; });
                return t.length ? t[0] : v;
            };
            break;

        case 'bool':
            input = described(h('input', {id: id, type: 'checkbox',
                                          name: path,
                                          checked: start === true}));
            f.collect = function () {
                return input.checked;
            };
            break;

        case 'number':
            input = described(h('input', {
                id: id, type: 'text', name: path, inputmode: 'numeric',
                value: start === undefined ? '' : String(start)
            }));
            f.collect = function () {
                var v = input.value.trim(), n;
                if (v === '') {
                    return undefined;
                }
                /* a JSON number only (Number() would also take 0x1e,
                 * 0b11 or Infinity, which JSON sends as null): the server
                 * says what is wrong with anything else */
                n = jsonNumber(v);
                return n === null ? v : n;
            };
            break;

        case 'textarea':
        case 'text':
            if (w === 'textarea' || name === 'public_key') {
                input = described(h('textarea', {id: id, name: path,
                                                 rows: 4}));
            } else {
                input = described(h('input', {id: id, type: 'text',
                                              name: path}));
                rk = p.ref === 'Name' ? refKind(p) : null;
                if (rk) {
                    list = ctx.datalist(rk);
                    if (list) {
                        input.setAttribute('list', list);
                    }
                }
            }
            input.value = start === undefined ? '' : String(start);
            f.collect = function () {
                if (input.value !== '') {
                    return input.value;
                }
                /* emptied where empty is a value and the default is not
                 * (an amqp_outconn's app_id): sent as entered, not left
                 * out (which would store the default) */
                return typeof p.default === 'string' && p.default !== ''
                       && !(p.minLength > 0) ? '' : undefined;
            };
            break;

        case 'lines':
            input = described(h('textarea', {id: id, name: path, rows: 3}));
            input.value = Array.isArray(start) ? start.join('\n') : '';
            hint.unshift('one per line');
            f.collect = function () {
                var v = input.value.split('\n').map(function (s) {
                    return s.trim();
                }).filter(function (s) { return s !== ''; });
                return v.length ? v : undefined;
            };
            break;

        case 'keys':
            input = h('output', {id: id, name: path},
                      (orig || []).length
                      ? (orig || []).map(function (k) { return k.id; })
                        .join(', ')
                      : '(none)');
            hint.unshift('made and revoked with the API keys actions');
            f.collect = function () {
                return present ? orig : undefined;
            };
            /* the keys made or revoked on the form's page since it was
             * filled: the form sends them as they now are */
            f.set = function (list) {
                orig = list;
                present = true;
                input.textContent = list.length ? list.map(function (k) {
                    return k.id;
                }).join(', ') : '(none)';
            };
            break;

        default:    /* json, jsonish */
            input = described(h('textarea', {id: id, name: path, rows: 3,
                                             class: 'mono'}));
            if (start !== undefined) {
                input.value = (w === 'jsonish' && typeof start === 'string')
                              ? start : JSON.stringify(start, null, 2);
            }
            hint.unshift(w === 'json' ? 'JSON' : 'text, or JSON');
            f.collect = function () {
                var v = input.value.trim();
                if (v === '') {
                    return undefined;
                }
                try {
                    return JSON.parse(v);
                } catch (e) {
                    if (w === 'jsonish') {
                        return v;
                    }
                    throw {field: path, message: 'not valid JSON: '
                                                 + e.message};
                }
            };
        }

        if (name === 'name' && ctx.editing) {
            input.readOnly = true;
        }

        /* a default left as it was is not written, unless it was stored */
        var inner = f.collect;
        f.collect = function () {
            var v = inner();
            if (!present && p.default !== undefined && same(v, p.default)) {
                return undefined;
            }
            return v;
        };

        f.input = input;
        f.error = h('p', {id: errId, class: 'field-error', hidden: true});
        f.el = h('div', {class: 'field field-' + w, 'data-path': path},
                 w === 'bool'
                 ? h('div', {class: 'check'}, input,
                     h('label', {for: id}, label(name)))
                 : [h('label', {for: id}, label(name),
                      req ? h('span', {class: 'req', title: 'required',
                                       text: ' *'}) : null),
                    input],
                 h('p', {id: hintId, class: 'hint', text: hint.join(' · ')}),
                 f.error);
        ctx.fields.push(f);
        return f;
    }

    function group(doc, name, p, path, orig, present, ctx) {
        var fs = h('fieldset', {class: 'group', 'data-path': path}),
            sub = [], k, req = p.required || [], saved = ctx.required,
            errId = nextId('err');

        fs.appendChild(h('legend', {text: label(name)}));
        if (p.description) {
            fs.appendChild(h('p', {class: 'hint', text: p.description}));
        }
        ctx.required = req;
        for (k in p.properties) {
            var sp = resolve(doc, p.properties[k]), o, f;
            o = present && orig ? orig[k] : undefined;
            f = field(doc, k, sp, path + '.' + k, o,
                      present && orig && Object.prototype.hasOwnProperty
                          .call(orig, k), ctx);
            if (f) {
                sub.push(f);
                fs.appendChild(f.el);
            }
        }
        ctx.required = saved;
        var g = {path: path, name: name, widget: 'group', el: fs,
                 error: h('p', {id: errId, class: 'field-error',
                                hidden: true})};
        fs.appendChild(g.error);
        g.collect = function () {
            var out = {}, any = false;
            sub.forEach(function (f) {
                var v = f.collect();
                if (v !== undefined) {
                    out[f.name] = v;
                    any = true;
                }
            });
            return any ? out : undefined;
        };
        g.input = sub.length ? sub[0].input : null;
        ctx.fields.push(g);
        return g;
    }

    /*
     * The form of one object. opts: {editing: bool, readOnly: bool,
     * datalist(kind) -> id or null}. Returns {el, collect(), showErrors(),
     * clearErrors()}.
     */
    function build(doc, kind, value, opts) {
        var v = variants(doc, kind), root = h('div', {class: 'form-fields'}),
            body = h('div'), state = {fields: []}, disc = null, out;

        opts = opts || {};
        value = value || {};

        function render(val) {
            var s = schemaFor(doc, kind, val), k, ctx;
            body.textContent = '';
            ctx = {fields: [], required: s.required || [],
                   editing: !!opts.editing,
                   datalist: opts.datalist || function () { return null; }};
            for (k in s.properties) {
                var p = resolve(doc, s.properties[k]), f;
                f = field(doc, k, p, k, val[k],
                          Object.prototype.hasOwnProperty.call(val, k), ctx);
                if (f) {
                    body.appendChild(f.el);
                }
            }
            state.fields = ctx.fields;
            state.top = ctx.fields.filter(function (f) {
                return f.path.indexOf('.') < 0;
            });
        }

        if (v !== null) {
            var id = nextId('fld');
            disc = h('select', {id: id, name: v.field,
                                disabled: !!opts.editing});
            v.order.forEach(function (d) {
                disc.appendChild(h('option', {value: d, text: d}));
            });
            disc.value = value[v.field] || v.order[0];
            /* what was entered, kept across switches (a password typed
             * for basic_auth is there again after a look at jwt) */
            var carried = {};
            disc.addEventListener('change', function () {
                try {
                    Object.assign(carried, out.collect(true));
                } catch (e) {
                    /* lenient: nothing thrown */
                }
                carried[v.field] = disc.value;
                render(Object.assign({}, carried));
            });
            root.appendChild(h('div', {class: 'field field-enum',
                                       'data-path': v.field},
                               h('label', {for: id}, label(v.field),
                                 h('span', {class: 'req', text: ' *'})),
                               disc,
                               h('p', {class: 'hint',
                                       text: 'selects the fields below'})));
        }
        root.appendChild(body);
        render(value);

        out = {
            el: root,
            discriminator: v && v.field,
            fields: function () { return state.fields; },
            /* sets a top-level field that can be set (the API keys) */
            set: function (name, v) {
                state.top.forEach(function (f) {
                    if (f.name === name && f.set) {
                        f.set(v);
                    }
                });
            },
            /* the object to send; throws {field, message} for JSON that
             * does not parse */
            collect: function (lenient) {
                var obj = {}, errs = [];
                if (disc) {
                    obj[v.field] = disc.value;
                }
                state.top.forEach(function (f) {
                    try {
                        var x = f.collect();
                        if (x !== undefined) {
                            obj[f.name] = x;
                        }
                    } catch (e) {
                        errs.push(e);
                    }
                });
                if (errs.length && !lenient) {
                    throw errs;
                }
                return obj;
            },
            clearErrors: function () {
                state.fields.forEach(function (f) {
                    f.error.hidden = true;
                    f.error.textContent = '';
                    f.el.classList.remove('has-error');
                    if (f.input && f.input.removeAttribute) {
                        f.input.removeAttribute('aria-invalid');
                    }
                });
            },
            /* errors: [{field, message}]; returns those no field took */
            showErrors: function (errors) {
                var rest = [], first = null;
                errors.forEach(function (e) {
                    var path = e.field || '', f = null, i;
                    while (path !== '' && f === null) {
                        for (i = 0; i < state.fields.length; i++) {
                            if (state.fields[i].path === path) {
                                f = state.fields[i];
                            }
                        }
                        if (f === null) {
                            path = path.replace(/(\.[^.]*|\[\d+\])$/, '');
                            if (path === e.field) {
                                path = '';
                            }
                        }
                    }
                    if (f === null) {
                        rest.push(e);
                        return;
                    }
                    f.error.hidden = false;
                    f.error.textContent = (f.error.textContent
                                           ? f.error.textContent + '; '
                                           : '') + e.message;
                    f.el.classList.add('has-error');
                    if (f.input && f.input.setAttribute) {
                        f.input.setAttribute('aria-invalid', 'true');
                    }
                    first = first || f;
                });
                if (first && first.input && first.input.focus) {
                    first.input.focus();
                }
                return rest;
            }
        };
        return out;
    }

    /* whether the kind (or one of its variants) has a secret field */
    function secretField(doc, kind, value) {
        var s = schemaFor(doc, kind, value), k;
        for (k in s.properties || {}) {
            if (resolve(doc, s.properties[k]).ref === 'Secret') {
                return k;
            }
        }
        return null;
    }

    return {h: h, build: build, resolve: resolve, variants: variants,
            schemaFor: schemaFor, secretField: secretField,
            widget: widget, nextId: nextId, jsonNumber: jsonNumber};
}());
