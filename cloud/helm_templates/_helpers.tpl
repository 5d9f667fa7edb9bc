{{/* flctl: the same objects flctl.cloud.k8s_manifests makes, from the same values. */}}
{{- define "flctl.instance" -}}{{ .Values.project | lower | replace "_" "-" | trunc 63 | trimAll "-" }}{{- end -}}
{{- define "flctl.meta" -}}
name: {{ .name }}
namespace: {{ .root.Values.namespace }}
labels:
  app.kubernetes.io/name: flctl
  app.kubernetes.io/instance: {{ include "flctl.instance" .root }}
  app.kubernetes.io/managed-by: flctl
  {{- if .component }}
  app.kubernetes.io/component: {{ .component }}
  {{- end }}
  {{- if .who }}
  flctl.dev/participant: {{ .who.name }}
annotations:
  flctl.dev/participant-name: {{ .who.participant | quote }}
  flctl.dev/org: {{ .who.org | quote }}
  {{- end }}
{{- end -}}
{{- define "flctl.secretKey" -}}{{ . | replace "/" "." }}{{- end -}}
{{- define "flctl.deployment" -}}
{{- $root := .root -}}{{- $who := .who -}}{{- $kind := .kind -}}
{{- $health := list "flctl" "node" "health" "/kit" "--workspace" "/workspace" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  {{- include "flctl.meta" (dict "root" $root "name" $who.name "who" $who "component" $kind) | nindent 2 }}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ include "flctl.instance" $root }}
      flctl.dev/participant: {{ $who.name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: flctl
        app.kubernetes.io/instance: {{ include "flctl.instance" $root }}
        app.kubernetes.io/managed-by: flctl
        app.kubernetes.io/component: {{ $kind }}
        flctl.dev/participant: {{ $who.name }}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: {{ $kind }}
          image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag }}"
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [node, start, /kit, --workspace, /workspace]
          env:
            - {name: HOME, value: /workspace}
            - {name: TMPDIR, value: /tmp}
          resources:
            {{- toYaml $who.resources | nindent 12 }}
          volumeMounts:
            {{- range $who.files }}
            - {name: kit, mountPath: /kit/{{ . }}, subPath: {{ include "flctl.secretKey" . }}, readOnly: true}
            {{- end }}
            - {name: workspace, mountPath: /workspace}
            - {name: tmp, mountPath: /tmp}
            {{- if $who.dataClaim }}
            {{- $one := eq (len $who.dataPaths) 1 }}
            {{- range $who.dataPaths }}
            - {name: data, mountPath: {{ . }}, readOnly: true{{ if not $one }}, subPath: {{ trimSuffix "/" . | base }}{{ end }}}
            {{- end }}
            {{- end }}
          {{- if eq $kind "server" }}
          ports:
            - {name: federation, containerPort: {{ $root.Values.port }}, protocol: TCP}
          livenessProbe: {tcpSocket: {port: federation}, periodSeconds: 20, failureThreshold: 3}
          {{- else }}
          livenessProbe:
            exec: {command: {{ append $health "--live" | toJson }}}
            periodSeconds: 20
            timeoutSeconds: 10
            failureThreshold: 3
          {{- end }}
          readinessProbe:
            exec: {command: {{ $health | toJson }}}
            periodSeconds: 10
            timeoutSeconds: 10
            failureThreshold: 3
          startupProbe:
            exec: {command: {{ append $health "--live" | toJson }}}
            periodSeconds: 5
            timeoutSeconds: 10
            failureThreshold: 24
          securityContext:
            runAsNonRoot: true
            runAsUser: 10001
            runAsGroup: 10001
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
            seccompProfile: {type: RuntimeDefault}
      volumes:
        - name: kit
          secret: {secretName: {{ $who.name }}-kit, defaultMode: 288}
        {{- if eq $kind "server" }}
        - name: workspace
          persistentVolumeClaim: {claimName: {{ $who.name }}-workspace}
        {{- else }}
        - {name: workspace, emptyDir: {}}
        {{- end }}
        - {name: tmp, emptyDir: {}}
        {{- if $who.dataClaim }}
        - name: data
          persistentVolumeClaim: {claimName: {{ $who.dataClaim }}, readOnly: true}
        {{- end }}
{{- end -}}
