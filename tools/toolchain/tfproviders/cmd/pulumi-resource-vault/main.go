// Command pulumi-resource-vault: the Pulumi "vault" provider, built by
// tools/toolchain/build.sh from the upstream hashicorp/terraform-provider-vault Go module
// (whole muxed SDKv2 + plugin-framework server, via its public
// vault.ProtoV5ProviderServerFactory) and pulumi-terraform-bridge.
//
// The official github.com/pulumi/pulumi-vault/provider module is not served by the Go
// module proxy we can reach (and its go.mod points at local ../upstream replacements,
// so it could not be built as a dependency anyway). Resource tokens are computed by
// module rules chosen to match the pulumi-vault Python SDK's modules; a few irregular
// names of the official provider are not reproduced (see README.md).
package main

import (
	"context"

	"github.com/hashicorp/terraform-plugin-mux/tf5to6server"
	"github.com/hashicorp/terraform-provider-vault/vault"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"

	"tradepulse.local/toolchain/tfproviders/internal/bridgemain"
)

// Version is set with -ldflags "-X main.Version=..." by build.sh.
var Version = "0.0.0-dev"

// TF module prefix (after "vault_") -> module of the pulumi-vault SDK.
var modules = map[string]string{
	"ad": "ad", "alicloud": "alicloud", "approle": "appRole", "aws": "aws", "azure": "azure",
	"cf": "cf", "consul": "consul", "database": "database", "gcp": "gcp", "generic": "generic",
	"github": "github", "identity": "identity", "jwt": "jwt", "keymgmt": "keymgmt", "kmip": "kmip",
	"kubernetes": "kubernetes", "kv": "kv", "ldap": "ldap", "managed": "managed",
	"mongodbatlas": "mongodbatlas", "okta": "okta", "os": "os", "pki": "pkiSecret",
	"pki_external_ca": "pkiexternalca", "rabbitmq": "rabbitMq", "radius": "radius", "saml": "saml",
	"secrets": "secrets", "spiffe": "spiffe", "ssh": "ssh", "terraform_cloud": "terraformcloud",
	"token_auth": "tokenauth", "transform": "transform", "transit": "transit",
}

func main() {
	ctx := context.Background()
	factory, _, err := vault.ProtoV5ProviderServerFactory(ctx)
	if err != nil {
		panic(err)
	}
	server, err := tf5to6server.UpgradeServer(ctx, factory)
	if err != nil {
		panic(err)
	}
	bridgemain.Main(bridgemain.Spec{
		Name: "vault", Version: Version, DisplayName: "HashiCorp Vault", Prefix: "vault",
		Modules: modules, Server: server(),
		Customize: func(p *tfbridge.ProviderInfo) {
			p.Config = map[string]*tfbridge.SchemaInfo{
				"skip_tls_verify":       {Default: &tfbridge.DefaultInfo{EnvVars: []string{"VAULT_SKIP_VERIFY"}}},
				"max_lease_ttl_seconds": {Default: &tfbridge.DefaultInfo{EnvVars: []string{"TERRAFORM_VAULT_MAX_TTL"}, Value: 1200}},
				"max_retries":           {Default: &tfbridge.DefaultInfo{EnvVars: []string{"VAULT_MAX_RETRIES"}, Value: 2}},
			}
		},
	})
}
