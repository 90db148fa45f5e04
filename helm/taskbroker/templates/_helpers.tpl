{{/* vim: set filetype=mustache: */}}

{{- define "taskbroker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix. Kept <= 40 chars so suffixes like -worker-<group> stay valid. */}}
{{- define "taskbroker.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "taskbroker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "taskbroker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taskbroker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "taskbroker.labels" -}}
helm.sh/chart: {{ include "taskbroker.chart" . }}
{{ include "taskbroker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: taskbroker
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Component labels: (dict "root" $ "component" "server") */}}
{{- define "taskbroker.componentLabels" -}}
{{ include "taskbroker.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "taskbroker.componentSelectorLabels" -}}
{{ include "taskbroker.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "taskbroker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "taskbroker.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "taskbroker.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "taskbroker.redisFullname" -}}
{{- printf "%s-redis" (include "taskbroker.fullname" .) -}}
{{- end -}}

{{- define "taskbroker.devSecretName" -}}
{{- printf "%s-dev" (include "taskbroker.fullname" .) -}}
{{- end -}}

{{- define "taskbroker.serverServiceName" -}}
{{- printf "%s-server" (include "taskbroker.fullname" .) -}}
{{- end -}}

{{/*
Fail early, with a message, on value combinations the schema cannot express.
Included from configmap.yaml (always rendered).
*/}}
{{- define "taskbroker.validate" -}}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.url) (not .Values.externalRedis.existingSecret) (not (and .Values.devSecrets.enabled .Values.devSecrets.redisUrl)) -}}
{{- fail "Redis: set redis.enabled=true, or externalRedis.url / externalRedis.existingSecret (or devSecrets.redisUrl for dev)" -}}
{{- end -}}
{{- if and .Values.externalRedis.url (contains "@" .Values.externalRedis.url) -}}
{{- fail "externalRedis.url must not carry credentials (it is stored in a ConfigMap): put the URL in a Secret and set externalRedis.existingSecret" -}}
{{- end -}}
{{- if and (not .Values.database.existingSecret) (not (and .Values.devSecrets.enabled .Values.devSecrets.databaseUrl)) -}}
{{- fail "Database: set database.existingSecret (a Secret holding TASKBROKER_DATABASE_URL), or devSecrets.databaseUrl for dev" -}}
{{- end -}}
{{- if and .Values.auth.jwt.enabled (not .Values.auth.jwt.existingSecret) (not .Values.auth.jwt.jwksExistingSecret) (not (and .Values.devSecrets.enabled .Values.devSecrets.jwtSecret)) -}}
{{- fail "auth.jwt.enabled needs auth.jwt.existingSecret (HS256 secret) or auth.jwt.jwksExistingSecret (JWKS file)" -}}
{{- end -}}
{{- if and .Values.server.autoscaling.enabled (lt (int .Values.server.autoscaling.maxReplicas) (int .Values.server.autoscaling.minReplicas)) -}}
{{- fail "server.autoscaling.maxReplicas must be >= minReplicas" -}}
{{- end -}}
{{- range $name, $g := (include "taskbroker.workerGroups" $ | fromYaml) -}}
{{- if and $g.autoscaling.enabled $g.keda.enabled -}}
{{- fail (printf "worker group %q: worker HPA (autoscaling.enabled) and KEDA (keda.enabled) are mutually exclusive; enable only one" $name) -}}
{{- end -}}
{{- if le (float64 $g.terminationGracePeriodSeconds) (float64 $g.maxTaskTimeLimitSeconds) -}}
{{- fail (printf "worker group %q: terminationGracePeriodSeconds (%v) must exceed maxTaskTimeLimitSeconds (%v) so running tasks can finish on warm shutdown" $name $g.terminationGracePeriodSeconds $g.maxTaskTimeLimitSeconds) -}}
{{- end -}}
{{- if not $g.queues -}}
{{- fail (printf "worker group %q: queues must not be empty" $name) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "worker group %q: name must be a DNS label (lowercase letters, digits, '-')" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Worker groups as YAML: name -> (worker defaults merged with the group's overrides).
Merged by hand up to three levels deep, because sprig's merge functions drop
overrides that are false/0/"" (e.g. keda.enabled: false in a group).
*/}}
{{- define "taskbroker.workerGroups" -}}
{{- $defaults := omit .Values.worker "groups" -}}
{{- $out := dict -}}
{{- range $name, $override := .Values.worker.groups -}}
{{- $g := deepCopy $defaults -}}
{{- range $k, $v := ($override | default dict) -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $g $k)) -}}
{{- $sub := get $g $k -}}
{{- range $k2, $v2 := $v -}}
{{- if and (kindIs "map" $v2) (kindIs "map" (get $sub $k2)) -}}
{{- $sub2 := get $sub $k2 -}}
{{- range $k3, $v3 := $v2 -}}
{{- $_ := set $sub2 $k3 $v3 -}}
{{- end -}}
{{- else -}}
{{- $_ := set $sub $k2 $v2 -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- $_ := set $g $k $v -}}
{{- end -}}
{{- end -}}
{{- $_ := set $out $name $g -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* True ("true") when KEDA objects render for the workers of group $g: (dict "root" $ "g" $g) */}}
{{- define "taskbroker.kedaActive" -}}
{{- if and .g.keda.enabled (.root.Capabilities.APIVersions.Has "keda.sh/v1alpha1") -}}true{{- end -}}
{{- end -}}

{{- define "taskbroker.monitoringAvailable" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{/* Preset pod anti-affinity: (dict "root" $ "component" "server" "mode" "soft" "extra" dict) */}}
{{- define "taskbroker.antiAffinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "taskbroker.componentSelectorLabels" (dict "root" .root "component" .component) | fromYaml)) -}}
{{- if eq .mode "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - {{- toYaml $term | nindent 6 }}
{{- else if eq .mode "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        {{- toYaml $term | nindent 8 }}
{{- end -}}
{{- end -}}

{{/* Host headers the server accepts. */}}
{{- define "taskbroker.allowedHosts" -}}
{{- if .Values.config.allowedHosts -}}
{{- join "," .Values.config.allowedHosts -}}
{{- else -}}
{{- $svc := include "taskbroker.serverServiceName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $withPort := list -}}
{{- range $hosts -}}
{{- $withPort = append $withPort (printf "%s:%v" . $.Values.server.service.port) -}}
{{- end -}}
{{- $hosts = concat $hosts $withPort -}}
{{- if .Values.ingress.enabled -}}
{{- range .Values.ingress.hosts -}}
{{- $hosts = append $hosts .host -}}
{{- end -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}
{{- end -}}

{{/*
Secret-backed environment: (dict "root" $ "component" "server"|"worker"|"beat").
Redis and database for all; token/JWT for the server only.
*/}}
{{- define "taskbroker.secretEnv" -}}
{{- $v := .root.Values -}}
{{- $dev := include "taskbroker.devSecretName" .root -}}
{{- if and $v.devSecrets.enabled $v.devSecrets.redisUrl }}
- name: TASKBROKER_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $dev }}
      key: redis-url
{{- else if and (not $v.redis.enabled) $v.externalRedis.existingSecret }}
- name: TASKBROKER_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.externalRedis.existingSecret }}
      key: {{ $v.externalRedis.existingSecretKey }}
{{- end }}
- name: TASKBROKER_DATABASE_URL
  valueFrom:
    secretKeyRef:
{{- if and $v.devSecrets.enabled $v.devSecrets.databaseUrl }}
      name: {{ $dev }}
      key: database-url
{{- else }}
      name: {{ $v.database.existingSecret }}
      key: {{ $v.database.existingSecretKey }}
{{- end }}
{{- if eq .component "server" }}
{{- if or (and $v.devSecrets.enabled $v.devSecrets.tokens) $v.auth.tokenFile.existingSecret }}
- name: TASKBROKER_TOKEN_FILE
  value: /etc/taskbroker/tokens/tokens
{{- end }}
{{- if $v.auth.jwt.enabled }}
{{- if and $v.devSecrets.enabled $v.devSecrets.jwtSecret }}
- name: TASKBROKER_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $dev }}
      key: jwt-secret
{{- else if $v.auth.jwt.existingSecret }}
- name: TASKBROKER_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $v.auth.jwt.existingSecret }}
      key: {{ $v.auth.jwt.existingSecretKey }}
{{- end }}
{{- if $v.auth.jwt.jwksExistingSecret }}
- name: TASKBROKER_JWT_JWKS_FILE
  value: /etc/taskbroker/jwks/jwks.json
{{- end }}
{{- end }}
{{- if and $v.console.enabled $v.console.existingSecret }}
- name: TASKBROKER_CONSOLE_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $v.console.existingSecret }}
      key: {{ $v.console.existingSecretKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes shared by every taskbroker pod, plus the server's secret files. */}}
{{- define "taskbroker.volumes" -}}
{{- $v := .root.Values -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ $v.tmpSizeLimit }}
{{- if eq .component "worker" }}
- name: prometheus-multiproc
  emptyDir:
    sizeLimit: 64Mi
{{- end }}
{{- if eq .component "server" }}
{{- if and $v.devSecrets.enabled $v.devSecrets.tokens }}
- name: tokens
  secret:
    secretName: {{ include "taskbroker.devSecretName" .root }}
    defaultMode: 0440
    items:
      - key: tokens
        path: tokens
{{- else if $v.auth.tokenFile.existingSecret }}
- name: tokens
  secret:
    secretName: {{ $v.auth.tokenFile.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $v.auth.tokenFile.existingSecretKey }}
        path: tokens
{{- end }}
{{- if and $v.auth.jwt.enabled $v.auth.jwt.jwksExistingSecret }}
- name: jwks
  secret:
    secretName: {{ $v.auth.jwt.jwksExistingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $v.auth.jwt.jwksExistingSecretKey }}
        path: jwks.json
{{- end }}
{{- end }}
{{- end -}}

{{- define "taskbroker.volumeMounts" -}}
{{- $v := .root.Values -}}
- name: tmp
  mountPath: /tmp
{{- if eq .component "worker" }}
- name: prometheus-multiproc
  mountPath: /run/prometheus-multiproc
{{- end }}
{{- if eq .component "server" }}
{{- if or (and $v.devSecrets.enabled $v.devSecrets.tokens) $v.auth.tokenFile.existingSecret }}
- name: tokens
  mountPath: /etc/taskbroker/tokens
  readOnly: true
{{- end }}
{{- if and $v.auth.jwt.enabled $v.auth.jwt.jwksExistingSecret }}
- name: jwks
  mountPath: /etc/taskbroker/jwks
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod annotations that roll pods when configuration changes. */}}
{{- define "taskbroker.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if .Values.devSecrets.enabled }}
checksum/dev-secret: {{ include (print .Template.BasePath "/secret-dev.yaml") . | sha256sum }}
{{- end }}
{{- end -}}

{{/* Egress rules when networkPolicy.restrictEgress: DNS, the built-in Redis, egressTo. */}}
{{- define "taskbroker.egressRules" -}}
{{- $np := .Values.networkPolicy -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "taskbroker.componentSelectorLabels" (dict "root" . "component" "redis") | nindent 10 }}
  ports:
    - port: 6379
      protocol: TCP
{{- end -}}
{{- with $np.egressTo }}
{{ toYaml . }}
{{- end -}}
{{- end -}}
