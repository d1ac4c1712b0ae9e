#!/usr/bin/env python3
"""Rebuilds definitions-v1.33.json.gz: Kubernetes v1.33's OpenAPI v2 definitions, as swagger.json has them.

The definitions come from the PyPI package kubernetes-validate (Apache-2.0), which ships
`kubernetes-json-schema/v1.33.0-local/_definitions.json`: swagger.json's `definitions` run through
openapi2jsonschema. That tool changed them in four ways, which this script undoes:

- `$ref`s point at `#/$defs/...`: back to `#/definitions/...`;
- every optional field's `type` became `[type, "null"]`: back to the one type;
- `apiVersion` and `kind` got an `enum` of the kind's own values: removed (swagger.json has none);
- IntOrString and Quantity were replaced by a `oneOf` of their scalar types, losing their
  description: restored as swagger.json writes them, the descriptions from k8s-openapi's
  `v1_33` sources (generated from the same swagger.json).

Usage (from the repository root):
    pip download --no-deps -d /tmp/kv kubernetes-validate==1.37.0
    unzip -o /tmp/kv/*.whl 'kubernetes_validate/kubernetes-json-schema/v1.33.0-local/_definitions.json' -d /tmp/kv
    python3 openapi/vendor.py /tmp/kv/kubernetes_validate/kubernetes-json-schema/v1.33.0-local/_definitions.json \
        ~/.cargo/registry/src/*/k8s-openapi-0.29.0/src
"""
import gzip
import json
import os
import re
import sys


def schema(x, prop=None):
    if not isinstance(x, dict):
        return x
    y = {}
    for k, v in x.items():
        if k == 'type' and isinstance(v, list):
            rest = [t for t in v if t != 'null']
            assert len(rest) == 1, v
            v = rest[0]
        elif k == 'enum':
            assert prop in ('apiVersion', 'kind'), prop
            continue
        elif k == '$ref' and isinstance(v, str):
            assert v.startswith('#/$defs/'), v
            v = '#/definitions/' + v[len('#/$defs/'):]
        elif k == 'properties':
            v = {n: schema(p, n) for n, p in v.items()}
        elif k in ('items', 'additionalProperties'):
            v = schema(v)
        elif k == 'oneOf':
            raise ValueError('a oneOf other than IntOrString and Quantity')
        y[k] = v
    return y


def description(k8s_openapi, rel):
    text = open(os.path.join(k8s_openapi, rel)).read()
    m = re.search(r'"description": ("(?:[^"\\]|\\.)*"),', text)
    return json.loads(m.group(1))


def main():
    src, k8s_openapi = sys.argv[1], sys.argv[2]
    defs = json.load(open(src))['$defs']
    special = {
        'io.k8s.apimachinery.pkg.util.intstr.IntOrString': {
            'description': description(k8s_openapi, 'v1_33/apimachinery/pkg/util/intstr/int_or_string.rs'),
            'format': 'int-or-string',
            'type': 'string',
        },
        'io.k8s.apimachinery.pkg.api.resource.Quantity': {
            'description': description(k8s_openapi, 'v1_33/apimachinery/pkg/api/resource/quantity.rs'),
            'type': 'string',
        },
    }
    result = {name: special.get(name) or schema(d) for name, d in defs.items()}
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'definitions-v1.33.json.gz')
    data = json.dumps(result, sort_keys=True, separators=(',', ':')).encode()
    with open(out, 'wb') as f:
        f.write(gzip.compress(data, compresslevel=9, mtime=0))
    print(len(result), 'definitions,', len(data), 'bytes')


if __name__ == '__main__':
    main()
