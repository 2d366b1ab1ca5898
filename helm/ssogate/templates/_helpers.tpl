{{/* Names and labels. */}}
{{- define "ssogate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ssogate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ssogate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ssogate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ssogate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ssogate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ssogate
{{- end -}}

{{- define "ssogate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ssogate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ssogate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding master key, admin token and the store and Redis URLs. */}}
{{- define "ssogate.secretName" -}}
{{- default (include "ssogate.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
What the gateway gets, as "true" or "": these drive the validation, the environment and
whether a writable volume is mounted. An item counts as given when it is in the values,
or when secrets.existingSecret is used and secrets.keys names a key for it.
*/}}
{{- define "ssogate.multi" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled -}}true{{- end -}}
{{- end -}}

{{- define "ssogate.has.storeUrl" -}}
{{- if or .Values.store.url (and .Values.secrets.existingSecret .Values.secrets.keys.storeUrl) -}}true{{- end -}}
{{- end -}}

{{- define "ssogate.has.stateUrl" -}}
{{- if or .Values.state.url (and .Values.secrets.existingSecret .Values.secrets.keys.stateUrl) -}}true{{- end -}}
{{- end -}}

{{- define "ssogate.has.masterKey" -}}
{{- if or .Values.secrets.masterKey (and .Values.secrets.existingSecret .Values.secrets.keys.masterKey) -}}true{{- end -}}
{{- end -}}

{{- define "ssogate.has.adminToken" -}}
{{- if or .Values.secrets.adminToken (and .Values.secrets.existingSecret .Values.secrets.keys.adminToken) -}}true{{- end -}}
{{- end -}}

{{/* The store is PostgreSQL: a postgres URL in the values, or one from your Secret. */}}
{{- define "ssogate.postgres" -}}
{{- if .Values.store.url -}}
{{- if regexMatch "^postgres(ql)?://" .Values.store.url -}}true{{- end -}}
{{- else if include "ssogate.has.storeUrl" . -}}true{{- end -}}
{{- end -}}

{{/*
A writable /var/lib/ssogate is needed for the SQLite file and for a master key the
gateway generates; with PostgreSQL and a given master key the gateway writes nothing.
*/}}
{{- define "ssogate.needsDataVolume" -}}
{{- if not (and (include "ssogate.postgres" .) (include "ssogate.has.masterKey" .)) -}}true{{- end -}}
{{- end -}}

{{/* The public URL: configured, else the first ingress host, else the port-forward URL. */}}
{{- define "ssogate.publicUrl" -}}
{{- if .Values.config.public_url -}}
{{- .Values.config.public_url -}}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- $host := (first .Values.ingress.hosts).host -}}
{{- $tls := false -}}
{{- range .Values.ingress.tls -}}{{- if has $host .hosts -}}{{- $tls = true -}}{{- end -}}{{- end -}}
{{- printf "%s://%s" (ternary "https" "http" $tls) $host -}}
{{- else -}}
http://127.0.0.1:8080
{{- end -}}
{{- end -}}

{{/*
Every check that must stop a release before it reaches the cluster, with a message that
says what to set. Included by the Deployment.
*/}}
{{- define "ssogate.validate" -}}
{{- $v := .Values -}}
{{- if include "ssogate.multi" . -}}
{{- $n := ternary (printf "autoscaling (up to %v replicas)" $v.autoscaling.maxReplicas) (printf "replicaCount=%v" $v.replicaCount) $v.autoscaling.enabled -}}
{{- $missing := list -}}
{{- if not (include "ssogate.has.stateUrl" .) -}}{{- $missing = append $missing "state.url (Redis: redis://host:6379/0 or rediss://...)" -}}{{- end -}}
{{- if not (include "ssogate.postgres" .) -}}{{- $missing = append $missing "store.url (PostgreSQL: postgres://user:password@host:5432/db)" -}}{{- end -}}
{{- if not (include "ssogate.has.masterKey" .) -}}{{- $missing = append $missing "secrets.masterKey (openssl rand -base64 32)" -}}{{- end -}}
{{- if $missing -}}
{{- fail (printf "\n\nssogate: %s needs state shared by every replica. Missing: %s. Give them in the values, or in secrets.existingSecret under the keys named by secrets.keys. One replica (replicaCount=1) runs without them, on SQLite and in-memory state." $n (join ", " $missing)) -}}
{{- end -}}
{{- if $v.persistence.enabled -}}
{{- fail "\n\nssogate: persistence is the SQLite store of a single replica; with two or more replicas the store is PostgreSQL: set persistence.enabled=false." -}}
{{- end -}}
{{- end -}}
{{- if and (include "ssogate.postgres" .) (not (include "ssogate.has.masterKey" .)) -}}
{{- fail "\n\nssogate: the store is PostgreSQL, so the master key must outlive the pod: set secrets.masterKey (openssl rand -base64 32) or provide it in secrets.existingSecret." -}}
{{- end -}}
{{- if $v.secrets.existingSecret -}}
{{- range $item := list "store.url" "state.url" "secrets.masterKey" "secrets.adminToken" -}}
{{- $parts := splitList "." $item -}}
{{- if index (index $v (first $parts)) (last $parts) -}}
{{- fail (printf "\n\nssogate: secrets.existingSecret is set, so %s must come from that Secret (key secrets.keys.*), not from the values." $item) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $key := list "listen" "data_dir" "certs_dir" -}}
{{- if hasKey $v.config $key -}}
{{- fail (printf "\n\nssogate: config.%s is set by the chart (in the pod environment, from containerPort and the data volume at /var/lib/ssogate); remove it from config." $key) -}}
{{- end -}}
{{- end -}}
{{- range $key, $where := dict "master_key" "secrets.masterKey" "admin_token" "secrets.adminToken" "clients" "clients (top level)" -}}
{{- if hasKey $v.config $key -}}
{{- fail (printf "\n\nssogate: config.%s would put a secret in a ConfigMap; use %s instead." $key $where) -}}
{{- end -}}
{{- end -}}
{{- range $section, $where := dict "store" "store.url" "state" "state.url" -}}
{{- if and (hasKey $v.config $section) (kindIs "map" (index $v.config $section)) (hasKey (index $v.config $section) "url") -}}
{{- fail (printf "\n\nssogate: config.%s.url would put a secret in a ConfigMap; use %s (kept in the Secret) instead." $section $where) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The config file: the values' config plus what the chart owns, and the clients. */}}
{{- define "ssogate.configToml" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "public_url" (include "ssogate.publicUrl" .) -}}
{{- if .Values.clients -}}
{{- $_ := set $cfg "clients" .Values.clients -}}
{{- end -}}
# ssogate configuration, rendered by the Helm chart from its values (`config`, `clients`).
# The pod's environment adds listen, data_dir and certs_dir, and the secrets
# (SSOGATE_MASTER_KEY, SSOGATE_ADMIN_TOKEN, SSOGATE_STORE__URL, SSOGATE_STATE__URL);
# client secrets are the exception: the gateway reads them only from this file.
{{ include "ssogate.toml.table" (dict "table" $cfg "path" "") }}
{{- end -}}

{{/*
A TOML writer. Helm's own toToml writes every number as a float (1000.0), which the
gateway refuses for its integer keys, so numbers without a fraction are written as
integers here. null values are left out. Keys are sorted (range over a map).
*/}}
{{- define "ssogate.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "ssogate.toml.value" -}}
{{- if kindIs "string" . -}}{{ toJson . }}
{{- else if kindIs "bool" . -}}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (float64 (int64 .)) (float64 .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if kindIs "slice" . -}}
{{- $items := list -}}
{{- range . -}}{{- $items = append $items (include "ssogate.toml.value" .) -}}{{- end -}}
[{{ join ", " $items }}]
{{- else if kindIs "map" . -}}
{{- $items := list -}}
{{- range $k, $v := . -}}{{- if not (kindIs "invalid" $v) -}}{{- $items = append $items (printf "%s = %s" (include "ssogate.toml.key" $k) (include "ssogate.toml.value" $v)) -}}{{- end -}}{{- end -}}
{ {{- join ", " $items -}} }
{{- else -}}{{ . }}
{{- end -}}
{{- end -}}

{{/* Is this value a list of tables (written as [[path]])? */}}
{{- define "ssogate.toml.isTableList" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) -}}
{{- $all := true -}}
{{- range . -}}{{- if not (kindIs "map" .) -}}{{- $all = false -}}{{- end -}}{{- end -}}
{{- if $all -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ssogate.toml.table" -}}
{{- $t := .table -}}
{{- $path := .path -}}
{{- range $k, $v := $t -}}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) (include "ssogate.toml.isTableList" $v)) }}
{{ include "ssogate.toml.key" $k }} = {{ include "ssogate.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $k, $v := $t -}}
{{- $p := ternary (include "ssogate.toml.key" $k) (printf "%s.%s" $path (include "ssogate.toml.key" $k)) (eq $path "") -}}
{{- if and (kindIs "map" $v) (gt (len $v) 0) }}

[{{ $p }}]
{{- include "ssogate.toml.table" (dict "table" $v "path" $p) -}}
{{- else if include "ssogate.toml.isTableList" $v -}}
{{- range $item := $v }}

[[{{ $p }}]]
{{- include "ssogate.toml.table" (dict "table" $item "path" $p) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The container's environment: where to listen and write (these override the image's
defaults), each secret item from the Secret (the chart's, holding
what the values give; or yours, holding what secrets.keys names), then extraEnv.
*/}}
{{- define "ssogate.env" -}}
{{- $s := .Values.secrets -}}
{{- $secretName := include "ssogate.secretName" . -}}
{{- $items := list
  (list "SSOGATE_MASTER_KEY" $s.masterKey $s.keys.masterKey "master-key")
  (list "SSOGATE_ADMIN_TOKEN" $s.adminToken $s.keys.adminToken "admin-token")
  (list "SSOGATE_STORE__URL" .Values.store.url $s.keys.storeUrl "store-url")
  (list "SSOGATE_STATE__URL" .Values.state.url $s.keys.stateUrl "state-url") -}}
- name: SSOGATE_LISTEN
  value: {{ printf "0.0.0.0:%v" .Values.containerPort | quote }}
- name: SSOGATE_DATA_DIR
  value: /var/lib/ssogate
- name: SSOGATE_CERTS_DIR
  value: /var/lib/ssogate/certs
{{- range $i := $items -}}
{{- $key := "" -}}
{{- if $s.existingSecret -}}
{{- $key = index $i 2 -}}
{{- else if index $i 1 -}}
{{- $key = index $i 2 | default (index $i 3) -}}
{{- end -}}
{{- if $key }}
- name: {{ index $i 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ $key }}
{{- end -}}
{{- end -}}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end -}}
{{- end -}}
