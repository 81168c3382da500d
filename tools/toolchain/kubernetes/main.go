// Command pulumi-resource-kubernetes: the Pulumi kubernetes provider, served from the
// github.com/pulumi/pulumi-kubernetes/provider/v4 Go module with its committed
// schema.json / terraform-mapping.json.
//
// Upstream's cmd/pulumi-resource-kubernetes embeds generated files that are not part of
// the module zip, so this is our own main: tools/toolchain/build.sh copies (minified)
// schema.json and terraform-mapping.json from the module cache into this directory as
// schema-embed.json / terraform-mapping-embed.json (gitignored) right before `go build`.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
