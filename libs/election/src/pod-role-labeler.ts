/**
 * Keeps the replica's own Pod labelled `flotilla.io/role=leader|follower`, so that
 * `kubectl get pods -L flotilla.io/role` shows the roles and the chart's `<release>-rw` /
 * `<release>-ro` Services select the leader and the followers.
 *
 * One JSON merge patch of metadata.labels per change; other labels are untouched. The labeler
 * remembers the last role written and skips a patch that would change nothing, so calling
 * {@link PodRoleLabeler.setRole} on every lease event is cheap. A failed patch is reported to the
 * caller and not remembered, so the next call retries it.
 */
import type { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { currentNamespace, FIELD_MANAGER, KubernetesEnvironmentOptions, kubernetesClient, loadKubeConfig, withRequestTimeout } from './kubernetes-lease';

/** The label key the chart's Services select on. */
export const ROLE_LABEL = 'flotilla.io/role';

/** Values of {@link ROLE_LABEL}. A replica that is neither (starting, seeding) is a follower for routing. */
export type PodRole = 'leader' | 'follower';

export interface PodRoleLabelerOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /** The Pod's own name (FLOTILLA_NODE, from the downward API metadata.name). */
  podName: string;
  /** A PATCH that takes longer is abandoned (and retried by the caller). Default 2000. */
  requestTimeoutMs?: number;
}

/** Default bound of one label PATCH: a hung one would hold back every later role change. */
export const POD_LABEL_TIMEOUT_MS = 2000;

/** The role label could not be written; `cause` is the API error. */
export class PodLabelError extends Error {
  override readonly name = 'PodLabelError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export class PodRoleLabeler {
  private readonly api: CoreV1Api;
  private written: PodRole | null = null;

  constructor(private readonly options: PodRoleLabelerOptions) {
    this.api = options.kubeConfig.makeApiClient(kubernetesClient().CoreV1Api);
  }

  /** A labeler for pod `podName` (FLOTILLA_NODE), connected as {@link KubernetesLeaser.fromEnvironment} is. */
  static fromEnvironment(podName: string, options: KubernetesEnvironmentOptions = {}): PodRoleLabeler {
    const kubeConfig = loadKubeConfig(options.kubeconfigPath, options.env);
    return new PodRoleLabeler({ kubeConfig, podName, namespace: options.namespace ?? currentNamespace(kubeConfig, options.env) });
  }

  /** The role last written successfully, or null before the first write. */
  get currentRole(): PodRole | null {
    return this.written;
  }

  /**
   * Sets the Pod's role label to `role` (no request when it is already that, as far as this
   * labeler knows). Throws {@link PodLabelError} when the API server refuses or cannot be reached.
   */
  async setRole(role: PodRole): Promise<void> {
    if (this.written === role) return;
    const { namespace, podName } = this.options;
    try {
      await this.api.patchNamespacedPod(
        { name: podName, namespace, body: { metadata: { labels: { [ROLE_LABEL]: role } } }, fieldManager: FIELD_MANAGER },
        withRequestTimeout(this.options.requestTimeoutMs ?? POD_LABEL_TIMEOUT_MS, kubernetesClient().setHeaderOptions('Content-Type', kubernetesClient().PatchStrategy.MergePatch)),
      );
    } catch (err) {
      this.written = null;
      throw new PodLabelError(`label pod ${namespace}/${podName} ${ROLE_LABEL}=${role}: ${(err as Error).message ?? err}`, { cause: err });
    }
    this.written = role;
  }
}
