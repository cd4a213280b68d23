/**
 * The public /v1 API: decode (DTOs, validated by the pipe) → route → map the reply. No logic here
 * beyond shaping the contract's JSON; routing rules live in GatewayRouter.
 */
import { Body, Controller, Get, HttpCode, Inject, Post } from '@nestjs/common';
import { ApiExcludeEndpoint, ApiOkResponse, ApiResponse, ApiTags } from '@nestjs/swagger';
import { FlotillaConfig } from '@flotilla/config';
import { ClusterView } from '../../../libs/replication/src/cluster-view';
import {
  ClusterResponseDto,
  consistencyOf,
  ErrorResponseDto,
  ExecuteRequestDto,
  ExecuteResponseDto,
  QueryRequestDto,
  QueryResponseDto,
} from './dto';
import { GatewayRouter } from './gateway-router';
import { MonitorBoard } from './monitor-board';
import { OpenApiDocument } from './openapi';

/** One validated write through the router, shaped as the contract's answer (the controller's and the fast path's). */
export async function executeThrough(router: GatewayRouter, body: ExecuteRequestDto): Promise<ExecuteResponseDto> {
  const reply = await router.execute({
    statements: body.statements.map((s) => (s.params === undefined ? { sql: s.sql } : { sql: s.sql, params: s.params })),
    idempotencyKey: body.idempotencyKey,
    durability: body.durability,
  });
  return { lsn: reply.lsn, epoch: reply.epoch, results: reply.results };
}

@ApiTags('v1')
@ApiResponse({ status: 400, description: 'Bad input or SQL error', type: ErrorResponseDto })
@ApiResponse({ status: 503, description: 'No leader / replica; retry after Retry-After seconds', type: ErrorResponseDto })
@Controller('v1')
export class ApiController {
  constructor(
    @Inject(GatewayRouter) private readonly router: GatewayRouter,
    @Inject(ClusterView) private readonly view: ClusterView,
    @Inject(FlotillaConfig) private readonly config: FlotillaConfig,
    @Inject(OpenApiDocument) private readonly openApi: OpenApiDocument,
    @Inject(MonitorBoard) private readonly monitors: MonitorBoard,
  ) {}

  /** One write transaction, all or nothing, on the leader. */
  @Post('execute')
  @HttpCode(200)
  @ApiOkResponse({ type: ExecuteResponseDto })
  @ApiResponse({ status: 409, description: 'Constraint violation or stale epoch', type: ErrorResponseDto })
  @ApiResponse({ status: 413, description: 'Body larger than maxBodyBytes', type: ErrorResponseDto })
  execute(@Body() body: ExecuteRequestDto): Promise<ExecuteResponseDto> {
    return executeThrough(this.router, body);
  }

  /** One read, served by a replica that satisfies the consistency level. */
  @Post('query')
  @HttpCode(200)
  @ApiOkResponse({ type: QueryResponseDto })
  async query(@Body() body: QueryRequestDto): Promise<QueryResponseDto> {
    const reply = await this.router.query({
      sql: body.sql,
      params: body.params,
      consistency: consistencyOf(body),
      minLsn: body.minLsn,
      minEpoch: body.minEpoch,
      maxLagMs: body.maxLagMs,
    });
    return { rows: reply.rows, servedBy: reply.servedBy, lsn: reply.lsn };
  }

  /** The cluster as the heartbeats tell it, and what the active failover monitor says. */
  @Get('cluster')
  @ApiOkResponse({ type: ClusterResponseDto })
  cluster(): ClusterResponseDto {
    const s = this.view.summary();
    return {
      cluster: this.config.cluster,
      epoch: s.epoch,
      leader: s.leader,
      mode: s.mode ?? this.config.mode,
      logFormat: s.logFormat,
      nodes: this.view.nodes(),
      failover: this.monitors.failover(),
    };
  }

  /** This API as OpenAPI 3, generated from the DTOs. */
  @Get('openapi.json')
  @ApiExcludeEndpoint()
  openapi(): object {
    return this.openApi.get();
  }
}
