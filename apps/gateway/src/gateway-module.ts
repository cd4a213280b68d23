/**
 * The gateway's Nest module. The core objects (ClusterView, NatsLink, GatewayRouter, metrics) are
 * plain classes built in main.ts and handed in as values; Nest only wires them to controllers.
 */
import { DynamicModule, Module, Provider } from '@nestjs/common';
import { APP_FILTER, APP_PIPE } from '@nestjs/core';
import { FlotillaConfig } from '@flotilla/config';
import type { Logger } from '@flotilla/logging';
import { ClusterView } from '../../../libs/replication/src/cluster-view';
import { Admin } from './admin';
import { AdminController } from './admin-controller';
import { BODY_SHORTCUTS } from './body-shortcuts';
import { ApiController } from './api-controller';
import { ErrorFilter } from './error-filter';
import { GatewayRouter } from './gateway-router';
import { HealthController } from './health-controller';
import { GatewayMetrics } from './metrics';
import { MonitorBoard } from './monitor-board';
import { NatsLink } from './nats-link';
import { OpenApiDocument } from './openapi';
import { BodyValidationPipe } from './validation';

/** Everything the gateway module needs, built by the caller. */
export interface GatewayParts {
  config: FlotillaConfig;
  logger: Logger;
  view: ClusterView;
  link: NatsLink;
  router: GatewayRouter;
  metrics: GatewayMetrics;
  openApi: OpenApiDocument;
  monitors: MonitorBoard;
  admin: Admin;
}

@Module({})
export class GatewayModule {
  static forRoot(parts: GatewayParts): DynamicModule {
    const providers: Provider[] = [
      { provide: FlotillaConfig, useValue: parts.config },
      { provide: ClusterView, useValue: parts.view },
      { provide: NatsLink, useValue: parts.link },
      { provide: GatewayRouter, useValue: parts.router },
      { provide: GatewayMetrics, useValue: parts.metrics },
      { provide: OpenApiDocument, useValue: parts.openApi },
      { provide: MonitorBoard, useValue: parts.monitors },
      { provide: Admin, useValue: parts.admin },
      { provide: APP_FILTER, useValue: new ErrorFilter(parts.logger.child({ component: 'http' }), { maxBodyBytes: parts.config.maxBodyBytes }) },
      { provide: APP_PIPE, useValue: new BodyValidationPipe(BODY_SHORTCUTS) },
    ];
    return { module: GatewayModule, controllers: [ApiController, AdminController, HealthController], providers };
  }
}
