// Package bridgemain serves an upstream Terraform provider as a Pulumi provider with
// pulumi-terraform-bridge, generating the Pulumi package schema in-process on demand
// (GetSchema) instead of embedding a pre-generated schema file.
//
// The upstream provider is handed over as a bridge shim.Provider (for a
// plugin-framework provider: pfbridge.ShimProvider(p)).
package bridgemain

import (
	"context"
	"encoding/json"
	"io"

	pfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfgen"
	shim "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag/colors"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/spf13/afero"
)

// Spec describes one bridged provider.
type Spec struct {
	Name        string // Pulumi package name, e.g. "vault"
	Version     string // Pulumi package version (no leading v), e.g. "7.14.0"
	DisplayName string
	Prefix      string // Terraform resource prefix, e.g. "vault"
	// Prefix stripped from TF names before camel-casing them into token names:
	// "" keeps it (random_password -> random:index/randomPassword:RandomPassword, as pulumi-random does).
	TokenPrefix string
	Modules     map[string]string // TF module prefix (after Prefix_) -> Pulumi module; empty = single "index" module
	P           shim.Provider
	// Optional hook to adjust the computed ProviderInfo (token overrides, config defaults...).
	Customize func(*tfbridge.ProviderInfo)
}

// Info builds the bridge ProviderInfo for s.
func Info(ctx context.Context, s Spec) (tfbridge.ProviderInfo, error) {
	prov := tfbridge.ProviderInfo{
		P:              s.P,
		Name:           s.Name,
		Version:        s.Version,
		DisplayName:    s.DisplayName,
		ResourcePrefix: s.Prefix,
		MetadataInfo:   &tfbridge.MetadataInfo{Path: "", Data: tfbridge.ProviderMetadata(nil)},
		Python:         &tfbridge.PythonInfo{PyProject: struct{ Enabled bool }{true}, RespectSchemaVersion: true},
	}
	makeStandard := tokens.MakeStandard(s.Name)
	var strategy tokens.Strategy
	if len(s.Modules) == 0 {
		strategy = tokens.SingleModule(s.TokenPrefix, "index", makeStandard)
	} else {
		strategy = tokens.MappedModules(s.TokenPrefix, "index", s.Modules, makeStandard)
	}
	if s.Customize != nil {
		s.Customize(&prov)
	}
	if err := prov.ComputeTokens(tokens.WithCaseInsensitiveDedup(strategy, makeStandard, prov.MetadataInfo.Data)); err != nil {
		return prov, err
	}
	return prov, nil
}

// Main serves the provider; it never returns on success.
func Main(s Spec) {
	ctx := context.Background()
	info, err := Info(ctx, s)
	if err != nil {
		panic(err)
	}
	meta := pfbridge.ProviderMetadata{
		XGetSchema: func(ctx context.Context, _ plugin.GetSchemaRequest) ([]byte, error) {
			return Schema(info)
		},
	}
	pfbridge.Main(ctx, s.Name, info, meta)
}

// Schema generates the Pulumi package schema (JSON) for info, without docs/examples.
func Schema(info tfbridge.ProviderInfo) ([]byte, error) {
	sink := diag.DefaultSink(io.Discard, io.Discard, diag.FormatOptions{Color: colors.Never})
	g, err := tfgen.NewGenerator(tfgen.GeneratorOptions{
		Package:       info.Name,
		Version:       info.Version,
		Language:      tfgen.Schema,
		ProviderInfo:  info,
		Root:          afero.NewMemMapFs(),
		Sink:          sink,
		XInMemoryDocs: true,
		SkipExamples:  true,
		SkipDocs:      true,
	})
	if err != nil {
		return nil, err
	}
	res, err := g.Generate()
	if err != nil {
		return nil, err
	}
	res.PackageSpec.Version = info.Version
	return json.Marshal(res.PackageSpec)
}
