# Shell functions shared by the scripts that build Go programs from the module proxy
# (scripts/install-pulumi, scripts/install-kube). Sourced, not run.

module_json() { # module@version -> `go mod download -json` of it
  go mod download -json "$1"
}

json_field() { # reads JSON on stdin; prints a dotted field, empty when absent
  python3 -c 'import json,sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value.get(key, "") if isinstance(value, dict) else ""
print(value)' "$1"
}

copy_remote_replaces() { # go.mod of a module -> the same `replace` directives in the wrapper
  go mod edit -json "$1" | python3 -c 'import json,sys
for rep in json.load(sys.stdin).get("Replace") or []:
    old, new = rep["Old"], rep["New"]
    if new.get("Version"):  # a local path has none: it points into the source tree
        print(old["Path"] + "=" + new["Path"] + "@" + new["Version"])' |
    while read -r replacement; do go mod edit -replace="$replacement"; done
}

new_wrapper() { # dir name package...: a throwaway module that imports the packages to build
  local dir="$1" name="$2"
  shift 2
  mkdir -p "$dir"
  (
    cd "$dir"
    go mod init "$name" >/dev/null 2>&1
    {
      echo "//go:build tools"
      echo
      echo "package tools"
      echo
      for package in "$@"; do echo "import _ \"$package\""; done
    } >tools.go
  )
}
