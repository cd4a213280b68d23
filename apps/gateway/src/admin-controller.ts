/**
 * /v1/admin: switchover and the quarantine of discarded transactions. Decode (DTO) → Admin → JSON.
 */
import { Body, Controller, Get, HttpCode, Inject, Post } from '@nestjs/common';
import { ApiOkResponse, ApiResponse, ApiTags } from '@nestjs/swagger';
import { Admin } from './admin';
import { DiscardedResponseDto, ErrorResponseDto, ModeRequestDto, ModeResponseDto, SwitchoverRequestDto, SwitchoverResponseDto } from './dto';

@ApiTags('admin')
@ApiResponse({ status: 400, description: 'Bad input (unknown replica)', type: ErrorResponseDto })
@ApiResponse({ status: 503, description: 'No leader, or it did not answer; retry after Retry-After seconds', type: ErrorResponseDto })
@Controller('v1/admin')
export class AdminController {
  constructor(@Inject(Admin) private readonly admin: Admin) {}

  /** Planned leader change with no data loss: answers once the target leads (up to ~12 s). */
  @Post('switchover')
  @HttpCode(200)
  @ApiOkResponse({ type: SwitchoverResponseDto })
  @ApiResponse({ status: 409, description: 'The target already leads, or the leader refused', type: ErrorResponseDto })
  switchover(@Body() body: SwitchoverRequestDto): Promise<SwitchoverResponseDto> {
    return this.admin.switchover(body.to);
  }

  /** Replication mode at run time: recorded in the log, so every replica and any later leader keep it. */
  @Post('mode')
  @HttpCode(200)
  @ApiOkResponse({ type: ModeResponseDto })
  setMode(@Body() body: ModeRequestDto): Promise<ModeResponseDto> {
    return this.admin.setMode(body);
  }

  /** Transactions discarded by rewinds after failovers, from every replica that answers. */
  @Get('discarded')
  @ApiOkResponse({ type: DiscardedResponseDto })
  discarded(): Promise<DiscardedResponseDto> {
    return this.admin.discarded();
  }
}
