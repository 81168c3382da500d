// Command pulumi-language-python is a small, self-written Pulumi language host for
// Python programs, built by tools/toolchain/build.sh.
//
// Why our own: the upstream host lives in its own Go module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3), which the Go
// module proxy reachable from our machines does not serve. This host implements the
// subset of the LanguageRuntime gRPC service the CLI needs for
// `pulumi preview|up|refresh|destroy` of a Python program:
//
//   - GetPluginInfo, GetRequiredPlugins/GetRequiredPackages (empty: providers are
//     pre-installed into PULUMI_HOME by build.sh, and loaded on demand by the engine),
//   - Run: starts `python -u config_pipe.py pulumi-language-python-exec ...` (config_pipe.py
//     beside this file reads the stack's config from a pipe: see it for why; then the
//     upstream exec shim runs,
//     copied by build.sh from github.com/pulumi/pulumi/sdk/v3 next to this binary),
//     with the python interpreter chosen exactly like upstream via the sdk's
//     python/toolchain package (honours the `virtualenv` and `toolchain` runtime
//     options of Pulumi.yaml; pip, uv and poetry).
//   - InstallDependencies: creates/validates the venv and installs requirements via
//     the same toolchain package (used by `pulumi install`).
//
// Everything else (program generation, policy packs, debugging, ...) answers Unimplemented.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	pbempty "google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/grpc"
)

func main() {
	var tracing, root string
	flag.StringVar(&tracing, "tracing", "", "Emit tracing to a Zipkin-compatible tracing endpoint")
	flag.StringVar(&root, "root", "", "Project root path to use (ignored; taken from RunRequest)")
	var givenExecutor string
	flag.StringVar(&givenExecutor, "use-executor", "", "Use the given python exec shim instead of the one beside this binary")
	flag.Parse()
	args := flag.Args()
	logging.InitLogging(false, 0, false)

	execShim := givenExecutor
	if execShim == "" {
		self, err := os.Executable()
		if err != nil {
			cmdutil.Exit(fmt.Errorf("locating own executable: %w", err))
		}
		if r, err := filepath.EvalSymlinks(self); err == nil {
			self = r
		}
		execShim = filepath.Join(filepath.Dir(self), "pulumi-language-python-exec")
		if _, err := os.Stat(execShim); err != nil {
			if p, lerr := exec.LookPath("pulumi-language-python-exec"); lerr == nil {
				execShim = p
			} else {
				cmdutil.Exit(fmt.Errorf("could not find pulumi-language-python-exec beside %s or on PATH", self))
			}
		}
	}

	// config_pipe.py is installed beside the exec shim (build.sh).
	configPipe := filepath.Join(filepath.Dir(execShim), "config_pipe.py")
	if _, err := os.Stat(configPipe); err != nil {
		cmdutil.Exit(fmt.Errorf("could not find config_pipe.py beside %s", execShim))
	}

	var engineAddress string
	if len(args) > 0 {
		engineAddress = args[0]
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, &host{exec: execShim, configPipe: configPipe,
				engineAddress: engineAddress, tracing: tracing})
			return nil
		},
	})
	if err != nil {
		cmdutil.Exit(fmt.Errorf("could not start language host RPC server: %w", err))
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		cmdutil.Exit(fmt.Errorf("language host RPC stopped serving: %w", err))
	}
}

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	exec          string
	configPipe    string
	engineAddress string
	tracing       string
}

// options mirrors the python runtime options of Pulumi.yaml.
func parseOptions(info *pulumirpc.ProgramInfo) (toolchain.PythonOptions, error) {
	opts := toolchain.PythonOptions{Toolchain: toolchain.Pip}
	if info == nil {
		return opts, nil
	}
	opts.Root = info.GetRootDirectory()
	opts.ProgramDir = info.GetProgramDirectory()
	m := info.GetOptions().AsMap()
	if v, ok := m["virtualenv"].(string); ok {
		opts.Virtualenv = v
	}
	tc, _ := m["toolchain"].(string)
	switch strings.ToLower(tc) {
	case "", "pip":
		opts.Toolchain = toolchain.Pip
	case "uv":
		opts.Toolchain = toolchain.Uv
	case "poetry":
		opts.Toolchain = toolchain.Poetry
	default:
		return opts, fmt.Errorf("unsupported python toolchain %q", tc)
	}
	if v, ok := m["typechecker"].(string); ok && v != "" {
		return opts, fmt.Errorf("the typechecker option (%q) is not supported by this toolchain's language host", v)
	}
	return opts, nil
}

func (h *host) GetPluginInfo(context.Context, *pbempty.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

func (h *host) GetRequiredPlugins(context.Context, *pulumirpc.GetRequiredPluginsRequest) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetRequiredPackages(context.Context, *pulumirpc.GetRequiredPackagesRequest) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	opts, err := parseOptions(req.GetInfo())
	if err != nil {
		return err
	}
	tc, err := toolchain.ResolveToolchain(opts)
	if err != nil {
		return err
	}
	stdout, stderr := os.Stdout, os.Stderr
	dir := req.GetInfo().GetProgramDirectory()
	if err := tc.EnsureVenv(server.Context(), dir, req.GetUseLanguageVersionTools(), true, stdout, stderr); err != nil {
		return err
	}
	return tc.InstallDependencies(server.Context(), dir, req.GetUseLanguageVersionTools(), true, stdout, stderr)
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	opts, err := parseOptions(req.GetInfo())
	if err != nil {
		return nil, err
	}
	tc, err := toolchain.ResolveToolchain(opts)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	var args []string
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engineAddress)
	add("project", req.GetProject())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", fmt.Sprintf("%v", req.GetDryRun()))
	add("parallel", fmt.Sprint(req.GetParallel()))
	add("tracing", h.tracing)
	add("organization", req.GetOrganization())
	add("root_directory", req.GetInfo().GetRootDirectory())
	program := req.GetProgram()
	if program == "" {
		program = "."
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	// config_pipe.py (beside the exec shim) reads the config from a pipe and runs the shim:
	// in PULUMI_CONFIG, as upstream passes it, a config over 128 KiB (a stack spec of about
	// 65 services) makes exec fail with "argument list too long" (pulumi/pulumi#8680).
	cmd, err := tc.Command(ctx, append([]string{"-u", h.configPipe, h.exec}, args...)...)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	var config []byte
	if cfg := req.GetConfig(); cfg != nil {
		if config, err = json.Marshal(cfg); err != nil {
			return nil, err
		}
	}
	if config != nil { // no config (a stack without any): no PULUMI_CONFIG, as upstream
		reader, writer, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		defer reader.Close()
		cmd.ExtraFiles = []*os.File{reader} // fd 3 in the child
		env = append(env, "TRADEPULSE_PULUMI_CONFIG_FD=3")
		go func() {
			// A pipe holds 64 KiB: written while the child reads, then closed (its EOF).
			defer writer.Close()
			if _, err := writer.Write(config); err != nil {
				logging.V(5).Infof("language host: writing the config pipe: %v", err)
			}
		}()
	}
	if keys := req.GetConfigSecretKeys(); len(keys) > 0 {
		b, err := json.Marshal(keys)
		if err != nil {
			return nil, err
		}
		env = append(env, "PULUMI_CONFIG_SECRET_KEYS="+string(b))
	}
	cmd.Env = env
	logging.V(5).Infof("language host launching: %s", strings.Join(cmd.Args, " "))

	var errResult string
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			// Exit code 32 means the program reported its error already (bail).
			if exitErr.ExitCode() == 32 {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			errResult = fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode())
		} else {
			errResult = fmt.Sprintf("Problem executing program (could not run language executor): %v", err)
		}
	}
	return &pulumirpc.RunResponse{Error: errResult}, nil
}
