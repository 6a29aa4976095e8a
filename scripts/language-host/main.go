// Command pulumi-language-python starts the Python language host that scripts/install-pulumi
// builds from Pulumi SDK v3.79.0 the way the CLI of that version did: with the project's
// virtualenv (Pulumi.yaml, runtime.options.virtualenv) as a flag.
//
// Since v3.80 the CLI passes a language host nothing but the engine's address and sends the
// runtime options over RPC, which the v3.79.0 host does not read: left to itself it runs the
// program with whatever python is on PATH ("No module named 'pulumi'"). This wrapper reads the
// options from the Pulumi.yaml of the program's directory (the CLI starts the host there) or the
// nearest directory above it, as the CLI finds a project, and hands them over as v3.79.0's CLI
// did: -virtualenv and -root. With the flag the host runs the program with the virtualenv's
// python, and creates the virtualenv from requirements.txt when it is missing.
//
// PULUMI_PYTHON_CMD, when set, wins: the host is started as before, and runs that python.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"gopkg.in/yaml.v3"
)

// The v3.79.0 host, installed by scripts/install-pulumi beside the directory of this wrapper.
const hostPath = "../libexec/pulumi-language-python"

// The script the host runs the program with; the host looks for it beside itself otherwise.
const executor = "pulumi-language-python-exec"

type project struct {
	Runtime yaml.Node `yaml:"runtime"`
}

type runtimeMap struct {
	Options struct {
		Virtualenv string `yaml:"virtualenv"`
	} `yaml:"options"`
}

func main() {
	self, err := os.Executable()
	if err != nil {
		fail("cannot find its own path: %v", err)
	}
	bin := filepath.Dir(self)
	host := filepath.Join(bin, hostPath)
	args := []string{host, "-use-executor", filepath.Join(bin, executor)}
	if os.Getenv("PULUMI_PYTHON_CMD") == "" {
		flags, err := virtualenvFlags()
		if err != nil {
			fail("%v", err)
		}
		args = append(args, flags...)
	}
	args = append(args, os.Args[1:]...)
	if err := syscall.Exec(host, args, os.Environ()); err != nil {
		fail("cannot start %s: %v (run scripts/install-pulumi again)", host, err)
	}
}

// virtualenvFlags: -root and -virtualenv of the nearest project, none when it names no
// virtualenv.
func virtualenvFlags() ([]string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	for {
		for _, name := range []string{"Pulumi.yaml", "Pulumi.yml"} {
			path := filepath.Join(dir, name)
			data, err := os.ReadFile(path)
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				return nil, err
			}
			venv, err := virtualenvOf(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", path, err)
			}
			if venv == "" {
				return nil, nil
			}
			return []string{"-root=" + dir, "-virtualenv=" + venv}, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, nil
		}
		dir = parent
	}
}

// virtualenvOf: runtime.options.virtualenv of a project file; `runtime: python` has none.
func virtualenvOf(data []byte) (string, error) {
	var proj project
	if err := yaml.Unmarshal(data, &proj); err != nil {
		return "", err
	}
	if proj.Runtime.Kind != yaml.MappingNode {
		return "", nil
	}
	var runtime runtimeMap
	if err := proj.Runtime.Decode(&runtime); err != nil {
		return "", fmt.Errorf("runtime.options: %v", err)
	}
	return runtime.Options.Virtualenv, nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python (convai-models wrapper): "+format+"\n", args...)
	os.Exit(1)
}
